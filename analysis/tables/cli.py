"""Tables made from run records alone (never from live models), in the layouts of the AsFT paper.

    python -m analysis.tables RUN... [--out DIR] [--against FILE] [--per-layer] [--per-tensor]
                                     [--judge NAME]

Each argument's kind is detected: a grid run folder gives the EPL table (with τ, ASR at the
origin and VISAGE for 1-D runs, recomputed from points.jsonl; paper Table 7), an AsFT
comparison folder the HS/FA table (paper Table 2), `.safetensors` directions the cosine
tables (paper Table 1 when the files are named KIND-nN). Every table is written into --out
(default `tables/`) as CSV, Markdown and LaTeX, and printed as Markdown. Bad input stops
with one `error:` line and exit status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from analysis.tables.build import DEFAULT_FORMAT, FLOAT_FORMATS, build_tables, shown
from analysis.tables.render import to_markdown, write
from landscape.cli import Parser, run_cli
from landscape.errors import LandscapeError
from landscape.io import check_writable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m analysis.tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RUN",
        help="grid run folders, AsFT comparison folders, .safetensors directions",
    )
    p.add_argument("--out", type=Path, default=Path("tables"), help="folder for the tables")
    p.add_argument(
        "--against",
        help="the aligned direction (.safetensors) for the cosine table "
        "(default: the first .safetensors argument)",
    )
    p.add_argument("--per-layer", action="store_true", help="also a per-block cosine table")
    p.add_argument("--per-tensor", action="store_true", help="also a per-tensor cosine table")
    p.add_argument("--judge", help="EPL from this judge's ASR (default: the run's first judge)")
    return p.parse_args(argv)


class _Held(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _holding_warnings() -> Iterator[list[str]]:
    """The analysis loggers' warnings, held while the inputs are read: on bad input only the
    error line is shown, on good input they are printed after."""
    logger = logging.getLogger("analysis")
    held = _Held()
    logger.addHandler(held)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield held.messages
    finally:
        logger.removeHandler(held)
        logger.propagate = propagate


def _fmt(name: str) -> str:
    return FLOAT_FORMATS.get(name, DEFAULT_FORMAT)


def _write_all(tables: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    try:
        return [
            p
            for name, df in tables.items()
            for p in write(df, out / name, _fmt(name), shown(name, df))
        ]
    except OSError as e:
        raise LandscapeError(f"cannot write the tables into {out}: {e}") from None


def _build(a: argparse.Namespace) -> dict[str, pd.DataFrame]:
    check_writable(a.out)  # before the inputs are read: a bad --out fails first
    return build_tables(a.inputs, a.against, a.per_tensor, a.judge, a.per_layer)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    with _holding_warnings() as warnings:
        tables = run_cli(lambda: _build(a))
    if tables is None:
        return 2
    for m in warnings:
        print(f"warning: {m}", file=sys.stderr)
    written = run_cli(lambda: _write_all(tables, a.out))
    if written is None:
        return 2
    for name, df in tables.items():
        print(f"## {name}\n\n{to_markdown(shown(name, df), _fmt(name))}\n")
    print("written: " + ", ".join(str(p) for p in written))
    return 0
