"""The command line built from the config declarations (``options.py``): each command's options
are generated from its step config's fields, merged with a ``--config FILE`` (TOML; options on
the command line win), and turned into the config the step runs with.

A command with several modes (``train``: the generator, ``--model sasrec``, ``--a2po``) takes
the union of its modes' options and refuses, in one line, an option the chosen mode does not
use, naming the mode that does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ConfigError
from .options import (
    Decl,
    FileValue,
    build,
    check_known,
    coerce,
    declarations,
    describe,
    flat_values,
    read_config_file,
    to_toml,
)
from .validate import flag


@dataclass(frozen=True)
class Mode:
    """One way to run a command: its config class, and how a user names it."""

    name: str  # generator; how help text names it
    label: str  # how a message names it: "train", "train --model sasrec"
    config: type


@dataclass(frozen=True)
class Param:
    """A command-line parameter that is not a config field (``--run``, ``--json``, ...).

    ``key``: it may also be set in a config file under this name (the mode selectors);
    ``modes``: the modes that take it (None: all); ``into``: its value is the config option of
    that name (``prepare``'s SOURCE argument)."""

    name: str
    annotation: Any
    default: Any = None
    key: bool = False
    modes: tuple[str, ...] | None = None
    into: str | None = None
    required: bool = False


@dataclass
class Spec:
    """What a command takes: its modes, its other parameters, and how a mode is chosen."""

    command: str  # "train"
    modes: dict[str, Mode]
    params: list[Param] = field(default_factory=list)
    choose: Callable[[dict[str, Any]], str] | None = None  # parameter values -> mode name
    selectors: Callable[[str], dict[str, Any]] | None = None  # mode -> what chooses it

    def owners(self) -> dict[str, dict[str, Decl]]:
        """option name -> {mode name: its declaration in that mode's config}."""
        out: dict[str, dict[str, Decl]] = {}
        for mode in self.modes.values():
            for d in declarations(mode.config):
                out.setdefault(d.name, {})[mode.name] = d
        for name, by_mode in out.items():
            kinds = {(d.type, d.item) for d in by_mode.values()}
            if len(kinds) > 1:
                raise TypeError(f"{self.command}: option {name} has different types per mode")
        return out


CONFIG_OPTION = Annotated[Path | None, typer.Option(
    "--config", "-c", help="TOML file of option values (key = value, keys as the options with "
    "'_' for '-'); options on the command line win. `sgrec info --config STEP` prints the file "
    "of a finished step.", show_default=False)]


def _help(spec: Spec, by_mode: dict[str, Decl]) -> str:
    """The option's help with its default(s) and, for a multi-mode command, the modes taking
    it."""
    first = next(iter(by_mode.values()))
    text = first.help
    known = {m: d.default for m, d in by_mode.items() if d.default is not None}
    if "[default" in text or not known:
        defaults = ""
    elif len({describe(v) for v in known.values()}) == 1 and len(known) == len(by_mode):
        defaults = f" [default: {describe(first.default)}]"
    else:
        defaults = " [default: " + ", ".join(f"{m} {describe(v)}" for m, v in known.items()) + "]"
    if len(by_mode) < len(spec.modes):
        text = f"({', '.join(by_mode)} only) {text}"
    return text + defaults


def _option_param(spec: Spec, name: str, by_mode: dict[str, Decl]) -> inspect.Parameter:
    """The Typer parameter of one generated option (default None: "not given")."""
    d = next(iter(by_mode.values()))
    decls = [f"{d.flag}/--no-{d.flag[2:]}" if d.type is bool else d.flag]
    if d.short:
        decls.append(d.short)
    if d.type is tuple:
        typ: Any = list[str] if d.item is str else str
    else:
        typ = d.type
    opt = typer.Option(*decls, help=_help(spec, by_mode), show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=Annotated[typ | None, opt], default=None)


def signature(spec: Spec) -> inspect.Signature:
    """The Typer signature of a command: its parameters, ``--config``, then the options."""
    params = [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, annotation=p.annotation,
                                default=inspect.Parameter.empty if p.required else p.default)
              for p in spec.params]
    params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY,
                                    annotation=CONFIG_OPTION, default=None))
    params += [_option_param(spec, name, by_mode)
               for name, by_mode in spec.owners().items()
               if next(iter(by_mode.values())).cli]
    return inspect.Signature(params)


# ------------------------------------------------------------------------------- resolving


@dataclass
class Resolved:
    """A command's call, resolved: the mode, its config, and the other parameters' values."""

    mode: str
    config: Any
    params: dict[str, Any]


def resolve(spec: Spec, kwargs: dict[str, Any]) -> Resolved:
    """Merge the command line (``kwargs``) over ``--config``'s file, choose the mode, refuse
    options it does not take, and build its config."""
    owners = spec.owners()
    keys = {p.name: p for p in spec.params if p.key}
    values: dict[str, FileValue] = {}
    path = kwargs.get("config")
    if path is not None:
        found = read_config_file(path)
        check_known(found, [*owners, *keys], f"sgrec {spec.command}")
        for name, v in found.items():
            d = next(iter(owners[name].values())) if name in owners else None
            values[name] = FileValue(coerce(d, v.value, v.where) if d else v.value, v.where)
    params = {p.name: kwargs.get(p.name) for p in spec.params}
    for p in spec.params:  # the command line wins over the file (where: None)
        given = kwargs.get(p.name)
        if p.into and given is not None:
            values[p.into] = FileValue(str(given) if isinstance(given, Path) else given, None)
        elif p.key and given is not None and given != p.default:
            values[p.name] = FileValue(given, None)
    for name, by_mode in owners.items():
        given = kwargs.get(name) if next(iter(by_mode.values())).cli else None
        if given is not None:
            d = next(iter(by_mode.values()))
            values[name] = FileValue(coerce(d, given, d.flag), None)
    for name, p in keys.items():
        if name in values:
            v = values.pop(name)
            kind = type(p.default) if p.default is not None else str
            if not isinstance(v.value, kind):
                raise ConfigError(f"{name} {v.value!r} must be {kind.__name__}", v.where)
            params[name] = v.value
    mode = spec.choose(params) if spec.choose else next(iter(spec.modes))
    _refuse_others(spec, mode, owners, values, params)
    try:
        cfg = build(spec.modes[mode].config, {k: v.value for k, v in values.items()})
    except ConfigError as e:  # a bad value from the file: say where it was set
        where = next((v.where for k, v in values.items()
                      if v.where and str(e).startswith(flag(k) + " ")), None)
        raise (ConfigError(str(e), where) if where else e) from None
    return Resolved(mode, cfg, params)


def _refuse_others(spec: Spec, mode: str, owners: dict[str, dict[str, Decl]],
                   values: dict[str, FileValue], params: dict[str, Any]) -> None:
    """One line for the first option (or parameter) that the chosen mode does not take."""
    label = spec.modes[mode].label
    for name, v in values.items():
        if name in owners and mode not in owners[name]:
            takers = " and ".join(f"`sgrec {spec.modes[m].label}`" for m in owners[name])
            raise ConfigError(f"{flag(name)} is not an option of `sgrec {label}`; it belongs "
                              f"to {takers}", v.where)
    for p in spec.params:
        value = params.get(p.name)
        if p.modes and mode not in p.modes and value not in (None, False, p.default):
            takers = " and ".join(f"`sgrec {spec.modes[m].label}`" for m in p.modes)
            raise ConfigError(f"{flag(p.name)} is not an option of `sgrec {label}`; it "
                              f"belongs to {takers}")


def config_toml(spec: Spec, mode: str, config: dict[str, Any], header: list[str]) -> str:
    """The config file that reproduces a finished step from its manifest's ``config``."""
    selectors = spec.selectors(mode) if spec.selectors else {}
    return to_toml({**selectors, **flat_values(spec.modes[mode].config, config)}, header)


def make_command(app: typer.Typer, spec: Spec, run: Callable[[Resolved], None], *, name: str,
                 help: str, short_help: str,
                 guard: Callable[[Callable], Callable]) -> Callable[..., None]:
    """Register ``spec``'s command on ``app``: Typer parses the generated signature, ``run``
    gets the resolved call; ``guard`` wraps both (the CLI's one-line errors)."""

    @guard
    def command(**kwargs: Any) -> None:
        run(resolve(spec, kwargs))

    command.__signature__ = signature(spec)  # type: ignore[attr-defined]
    command.__doc__ = help
    command.__name__ = name.replace("-", "_")
    return app.command(name, help=help, short_help=short_help)(command)
