"""Options declared once. A step's config dataclass field carries its default and help
(``option``); the command line, config files (TOML) and `sgrec info --config` are all read off
these declarations (``declarations``), so adding an option is one edit.

A config nested in another (``nested``: the generator architecture inside the SFT config) lends
its fields to the outer command as options of their own: ``--d-model`` sets ``model.d_model``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import typing
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError, at
from .validate import flag as flag_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_META = "sgrec"


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None,
           short: str | None = None, cli: bool = True, factory: Any = None) -> Any:
    """A config field that is also a command-line option and a config-file key.

    ``flag``: the option's name when it is not the field's (``--item-ids`` for ``ids``);
    ``short``: a one-letter alias (``-k``); ``cli=False``: settable from the Python API and
    config files only; ``factory``: a default factory instead of ``default``."""
    meta = {_META: {"help": help, "flag": flag, "short": short, "cli": cli}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def nested(cls: type, help: str = "") -> Any:
    """A config of its own inside this one, whose fields are options of the outer command."""
    return field(default_factory=cls, metadata={_META: {"nested": True, "help": help}})


@dataclass(frozen=True)
class Decl:
    """One option: ``path`` locates it in the config (``("model", "d_model")``)."""

    name: str  # the config-file key: the flag with '_' for '-' (d_model, item_ids)
    path: tuple[str, ...]
    type: Any  # int, float, str, bool or tuple; ``optional``: None allowed
    item: Any  # a tuple's items: int (from "1,2,3" on the command line) or str (a repeated option)
    optional: bool
    default: Any
    help: str
    flag: str  # --d-model
    short: str | None
    cli: bool


def _base_type(hint: Any) -> tuple[Any, Any, bool]:
    """(int | float | str | bool | tuple, the tuple's item type, optional) of a field's type
    hint."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] in (int, str):
        return tuple, typing.get_args(hint)[0], optional
    if hint not in (int, float, str, bool):
        raise TypeError(f"option type {hint!r} is not supported")
    return hint, None, optional


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return MISSING


@functools.cache
def declarations(cls: type, prefix: tuple[str, ...] = ()) -> tuple[Decl, ...]:
    """Every option of config class ``cls``, nested configs' fields flattened in place (read
    once per class: the CLI, config files and manifests all ask)."""
    hints = typing.get_type_hints(cls)
    out: list[Decl] = []
    for f in fields(cls):
        meta = f.metadata.get(_META)
        if meta is None:
            continue
        if meta.get("nested"):
            out += declarations(hints[f.name], prefix + (f.name,))
            continue
        typ, item, optional = _base_type(hints[f.name])
        flag = meta["flag"] or flag_name(f.name)
        out.append(Decl(flag[2:].replace("-", "_"), prefix + (f.name,), typ, item, optional,
                        _default(f), meta["help"], flag, meta["short"], meta["cli"]))
    names = [d.name for d in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TypeError(f"{cls.__name__}: options declared twice: {dup}")
    return tuple(out)


def describe(value: Any) -> str:
    """How a default reads in help text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


class StepConfig:
    """Base of the step configs: validated on construction, ``to_dict()`` for manifests (tuples
    as lists, as JSON reads them back)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:  # pragma: no cover - every config overrides it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[call-overload]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------- values and checks


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def coerce(d: Decl, value: Any, where: str) -> Any:
    """``value`` (from a config file or the command line) as option ``d``'s type, or a
    ConfigError at ``where``. Tuples may come as a list or as "512,256,128"."""
    if value is None and d.optional:
        return None
    if d.type is tuple and d.item is str:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{d.name} {value!r} must be a list of strings, e.g. [\"a\", \"b\"]",
                          where)
    if d.type is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        try:
            items = [int(v) if isinstance(v, str) else v for v in value]
        except (TypeError, ValueError):
            items = None
        if items is not None and all(_is_int(v) for v in items):
            return tuple(items)
        raise ConfigError(f"{d.name} {value!r} must be a list of integers, e.g. 512,256,128",
                          where)
    ok = {int: _is_int(value),
          float: (_is_int(value) or isinstance(value, float)) and math.isfinite(value),
          str: isinstance(value, str), bool: isinstance(value, bool)}[d.type]
    if not ok:
        kind = {int: "an integer", float: "a number", str: "a string",
                bool: "true or false"}[d.type]
        raise ConfigError(f"{d.name} {value!r} must be {kind}", where)
    return float(value) if d.type is float else value


def build(cls: type, values: dict[str, Any]) -> Any:
    """A ``cls`` from option values by name (missing ones keep their defaults)."""
    kwargs: dict[str, Any] = {}
    for d in declarations(cls):
        if d.name not in values:
            continue
        node = kwargs
        for part in d.path[:-1]:
            node = node.setdefault(part, {})
        node[d.path[-1]] = values[d.name]
    return cls(**kwargs)


def flat_values(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """Option values by name from a config dict (``to_dict()``, a manifest's ``config``);
    None and absent values are left out (they mean the default)."""
    out: dict[str, Any] = {}
    for d in declarations(cls):
        node: Any = config
        for part in d.path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[d.name] = tuple(node) if d.type is tuple else node
    return out


# ---------------------------------------------------------------------------- config files

_KEY_LINE = re.compile(r"""^\s*(?:\[+\s*)?["']?([A-Za-z0-9_-]+)["']?\s*(?:=|\])""")


@dataclass(frozen=True)
class FileValue:
    value: Any
    where: str | None  # file:line; None: the command line


def read_config_file(path: Path | str) -> dict[str, FileValue]:
    """The key = value pairs of a TOML config file (keys with '-' read as '_'), each with the
    file:line it was set at. Tables are refused: a step's config file is flat."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the config file ({e.strerror or e})", path) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", path) from None
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        m = _KEY_LINE.match(line)
        if m:
            lines.setdefault(m.group(1).replace("-", "_"), n)
    out: dict[str, FileValue] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        where = at(path, lines.get(name))
        if isinstance(value, dict):
            raise ConfigError(f"[{key}] is a table; a config file holds plain key = value "
                              "lines (e.g. d_model = 256)", where)
        out[name] = FileValue(value, where)
    return out


def check_known(values: dict[str, FileValue], known: Iterable[str], what: str) -> None:
    """Refuse a key that is not an option of ``what`` (e.g. "sgrec train"), with its line."""
    known = set(known)
    for name, v in values.items():
        if name not in known:
            close = [k for k in sorted(known) if k.startswith(name[:3])][:5]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown key {name!r} for {what}{hint} (`{what} --help` lists "
                              "the options; a key is an option's name with '_' for '-')",
                              v.where)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(values: dict[str, Any], header: Iterable[str] = ()) -> str:
    """A flat TOML document: ``# header`` lines, then one ``key = value`` line per option."""
    lines = [f"# {h}" for h in header]
    lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"
