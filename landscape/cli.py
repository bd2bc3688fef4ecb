"""What every command line shares: one-line errors with exit status 2, and options declared
once, in the config dataclasses' field metadata.

A config field made with `option(default, "help text", ...)` becomes `--field-name` through
`add_options`; `from_options` builds the config back from the parsed namespace. So a
setting's default, help and type live beside the field that holds it, and options that two
commands share (`--judge`, `--dtype`, ...) are declared in the one dataclass both use.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from landscape.errors import LandscapeError

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (the usage stays under --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def run_cli(work: Callable[[], T]) -> T | None:
    """`work()`, with a LandscapeError printed as one `error:` line; None then (exit 2)."""
    try:
        return work()
    except LandscapeError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def option(
    default: Any = None,
    help: str | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    **argparse_kw: Any,
) -> Any:
    """A dataclass field that is also a command-line option. `argparse_kw` goes to
    `add_argument` (type, nargs, choices, metavar, flag=..., cli=False to keep it off the
    command line); without `type` it is taken from the default."""
    meta = {"help": help, **argparse_kw}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, exclude: tuple[str, ...] = ()) -> None:
    """One `--option` per field of the dataclass `cls` that carries option metadata."""
    for f in dataclasses.fields(cls):
        if f.name in exclude or "help" not in f.metadata or f.metadata.get("cli") is False:
            continue
        kw = {k: v for k, v in f.metadata.items() if k not in ("flag", "cli")}
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kw["dest"] = f.name
        if isinstance(default, bool) and "type" not in kw:
            kw.setdefault("action", "store_false" if default else "store_true")
        else:
            if isinstance(default, list | tuple):
                kw.setdefault("nargs", "+")
                if default and "type" not in kw:
                    kw["type"] = type(default[0])
                default = list(default)
            elif default is not None and "type" not in kw:
                kw["type"] = type(default)
            kw["default"] = default
        if (
            kw.get("help")
            and kw.get("default") not in (None, [], False)
            and "%(default)" not in kw["help"]
        ):
            kw["help"] += " (default: %(default)s)"
        parser.add_argument(_flag(f), **kw)


def from_options(cls: type[T], ns: argparse.Namespace | dict, **over: Any) -> T:
    """The dataclass `cls` from parsed options (fields absent from them keep their default);
    tuples come back as tuples."""
    values = vars(ns) if isinstance(ns, argparse.Namespace) else dict(ns)
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            v = values[f.name]
            default = f.default if f.default is not dataclasses.MISSING else None
            kw[f.name] = tuple(v) if isinstance(default, tuple) and v is not None else v
    kw.update(over)
    return cls(**kw)
