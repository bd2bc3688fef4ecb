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
import errno
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from landscape.errors import LandscapeError

T = TypeVar("T")


DEBUG_ENV = "LANDSCAPE_DEBUG"
_state = {"debug": False}
# argparse takes only plain negative numbers (-1, -0.5) for values; -1e-3 would be an option,
# and so would -inf, which then could not reach the range check that names it.
_NEGATIVE_NUMBER = re.compile(r"^-((\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|inf|infinity|nan)$", re.I)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one `error:` line (the usage stays under --help),
    negative numbers in any notation are values, and `--debug` shows tracebacks."""

    def __init__(self, *args, **kw):
        # No prefixes of long options: with many options, `--p` silently meaning
        # `--pair-seed` is worse than a one-line error.
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)
        self._negative_number_matcher = _NEGATIVE_NUMBER
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help=f"show the traceback of an error (also: {DEBUG_ENV}=1)",
        )

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        _state["debug"] = bool(getattr(ns, "debug", False))  # this command's, not the last's
        if hasattr(ns, "debug"):
            del ns.debug
        return ns


def _debug() -> bool:
    return _state["debug"] or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "False")


_OS_REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EACCES: "permission denied",
    errno.EEXIST: "already exists",
    errno.ENOENT: "no such file or folder",
}


def describe(e: BaseException) -> str | None:
    """The one line a command prints for an error it can be given from the command line or
    the file system; None for anything else (a bug, which keeps its traceback)."""
    if isinstance(e, LandscapeError):
        return str(e)
    if isinstance(e, UnicodeDecodeError):
        return f"an input file is not UTF-8 text ({e.reason} at byte {e.start})"
    if isinstance(e, json.JSONDecodeError):
        return f"an input file holds malformed JSON ({e.msg} at line {e.lineno})"
    if isinstance(e, OSError):
        reason = _OS_REASONS.get(e.errno) or e.strerror or type(e).__name__
        where = e.filename if e.filename is not None else ""
        if getattr(e, "filename2", None):
            where = f"{where} -> {e.filename2}"
        return f"{where}: {reason}" if where else reason
    return None


def run_cli(work: Callable[[], T]) -> T | None:
    """`work()` behind the commands' one error boundary: bad input, a file system that says
    no and malformed files each print one `error:` line and give None (exit status 2);
    Ctrl-C prints what was kept and exits with 130. `--debug` or LANDSCAPE_DEBUG=1 shows the
    traceback instead."""
    try:
        return work()
    except KeyboardInterrupt:
        if _debug():
            raise
        print("interrupted: finished work is kept; the same command resumes it", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        line = describe(e)
        if line is None or _debug():
            raise
        print(f"error: {line}", file=sys.stderr)
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
