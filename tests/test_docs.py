"""The documentation stays true: the command reference is what `--help` prints, every "§N" the
code cites is a section of docs/design.md, no document outside the repository is cited, the
README stays short and its links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*(ROOT / "src").rglob("*.py"), *(ROOT / "bench").glob("*.py"),
           *(ROOT / "tests").glob("*.py"), *(ROOT / "examples").glob("*.py")]
DOCS = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "data" / "README.md",
        ROOT / "bench" / "README.md"]


def test_commands_reference_is_generated_from_help():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from make_commands import render
    finally:
        sys.path.pop(0)
    committed = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/commands.md is stale: run `make docs`"


def test_every_section_the_code_cites_exists():
    headings = set(re.findall(r"^## (§\d+)", (ROOT / "docs" / "design.md").read_text(
        encoding="utf-8"), flags=re.M))
    cited = {}
    for path in SOURCES:
        for ref in re.findall(r"docs/design\.md (§\d+)", path.read_text(encoding="utf-8")):
            cited.setdefault(ref, path.name)
    assert cited, "the code cites docs/design.md somewhere"
    assert set(cited) <= headings, {r: p for r, p in cited.items() if r not in headings}


def test_no_document_outside_the_repository_is_cited():
    """"DESIGN §N" named a brief that is not in the repository; issue numbers mean nothing to
    a reader of the code either."""
    bad = re.compile(r"DESIGN §|DESIGN\.md|\bissue \d+|\bissues? #\d+")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in [*SOURCES, *DOCS]
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if bad.search(line) and p.name != "test_docs.py"]
    assert not found, found


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, spaces to '-', other punctuation dropped."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_every_link_between_the_documents_resolves():
    broken = []
    for doc in DOCS:
        for link in re.findall(r"\]\(([^)\s]+)\)", doc.read_text(encoding="utf-8")):
            if link.startswith("http"):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            if not target.exists() or (anchor and target.suffix == ".md"
                                       and anchor not in _anchors(target)):
                broken.append(f"{doc.relative_to(ROOT)}: {link}")
    assert not broken, broken


def test_make_docs_target_exists():
    res = subprocess.run(["make", "-n", "docs"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "make_commands.py" in res.stdout, res.stderr
