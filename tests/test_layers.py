"""The package's import graph: no import cycle anywhere, and no module imports a higher layer.

Layers, lowest first (a module may import its own layer and the ones below):
  core       errors, validation, option declarations, shared maths, names, devices, progress,
             artifacts and locks: what every step needs
  libraries  one package per pipeline stage, in pipeline order (a later stage may use an
             earlier one: the judge reads SID embeddings, RL decodes with the generator);
             each package's config lives here, beside it
  stores     reading a run's artifacts back (rundir, */store.py), then loading any model of a
             run by name (models.py)
  steps      the orchestration of each command (*/step.py, recommend, serve, info, report)
  cli        the command line, its rendering, and the config index for the Python API

Imports under ``if TYPE_CHECKING:`` are annotations only and not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sgrec_cli"

CORE = 0
LIBRARIES = {"eval.metrics": 1, "eval.bootstrap": 1, "eval.config": 1, "serve.config": 1,
             "data": 2, "baselines": 3, "sids": 4, "generator": 5, "judge": 6, "rl": 7,
             "serve.batcher": 8}
STORES, MODELS, STEPS, CLI = 10, 11, 20, 30
CORE_MODULES = {"", "errors", "validate", "options", "maths", "names", "sampling", "device",
                "distributed", "progress", "artifacts", "checkpoint", "runlock"}
STEP_MODULES = {"info", "report", "serve.recommend", "serve.app", "serve.server", "serve"}
CLI_MODULES = {"cli", "cliopts", "render", "config"}


def rank(module: str) -> int:
    """The layer of ``module`` (dotted, relative to sgrec_cli: "generator.sft")."""
    last = module.rsplit(".", 1)[-1]
    if module in CORE_MODULES:
        return CORE
    if module in CLI_MODULES:
        return CLI
    if module in STEP_MODULES or last == "step":
        return STEPS
    if module == "models":
        return MODELS
    if module == "rundir" or last == "store":
        return STORES
    for prefix, r in sorted(LIBRARIES.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            return r
    raise AssertionError(f"sgrec_cli.{module} has no layer: add it to tests/test_layers.py")


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``if TYPE_CHECKING:`` blocks."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports (at any depth: a function's lazy import
    counts too)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if name else []
        here = base if is_pkg else base[:-1]
        for node in ast.walk(tree):
            if node.lineno in skip if hasattr(node, "lineno") else False:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = here[: len(here) - (node.level - 1)]
                    target = ".".join(anchor + ([node.module] if node.module else []))
                elif (node.module or "").startswith("sgrec_cli"):
                    target = node.module[len("sgrec_cli."):] if "." in node.module else ""
                else:
                    continue
                targets = [target] + [f"{target}.{a.name}".lstrip(".") for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name[len("sgrec_cli."):] for a in node.names
                           if a.name.startswith("sgrec_cli.")]
            for t in targets:
                if t in mods and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if rank(b) > rank(a))


def test_no_import_cycle():
    assert cycles(imports()) == []


def test_no_module_imports_a_higher_layer():
    assert upward(imports()) == []


def test_the_scanner_sees_cycles_and_upward_imports(tmp_path):
    """The checks can fail: a package with a cycle and an upward import is caught."""
    pkg = tmp_path / "sgrec_cli"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("from .data.io import x\n")  # core -> library: upward
    (pkg / "data" / "io.py").write_text("def f():\n    from ..errors import y\n")  # lazy
    graph = imports(pkg)
    assert cycles(graph) == [["data.io", "errors"]]
    assert upward(graph) == ["errors -> data.io"]


def longest_functions(root: Path = PACKAGE, n: int = 5) -> list[tuple[int, str]]:
    """The ``n`` longest functions of the package, (lines with decorators and signature,
    "module.name")."""
    found = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.append((node.end_lineno - start + 1, f"{name}.{node.name}"))
    return sorted(found, reverse=True)[:n]


def test_no_function_is_longer_than_80_lines():
    """Each function readable in one screen, signature included."""
    assert longest_functions()[0][0] <= 80, longest_functions()
