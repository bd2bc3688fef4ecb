"""The run report as a command line.

    python -m analysis.report RUN... [--out DIR] [--plotlyjs inline|beside|cdn]

RUN is a grid run folder (a finished, whole run: a shard gets none, its merge does), an AsFT
comparison folder or an AsFT sweep folder. Without --out each RUN gets (again) its own
`report.html`, with plotly.js inlined: one file that opens anywhere, offline too. With --out
the reports go into DIR as `<name>.html` (and `index.html` linking them when there are
several), with plotly.js written once beside them as `plotly.min.js`. Everything is made from
the folders alone. Bad input stops with one `error:` line and exit status 2 before anything
is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from analysis.figures.plotlyjs import MODES
from analysis.report.build import REPORT, index_page, report_data, write_page
from analysis.report.grid import display_name
from landscape.cli import Parser, run_cli
from landscape.errors import LandscapeError
from landscape.io import atomic_write, check_writable

INDEX = "index.html"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m analysis.report",
        description=__doc__.split("\n\n", 2)[-1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run or AsFT folder(s)")
    p.add_argument("--out", type=Path, help="folder for the reports (default: each RUN's own)")
    p.add_argument(
        "--plotlyjs",
        choices=MODES,
        help="how the pages get plotly.js: inline (default without --out), beside "
        "(default with --out: plotly.min.js once beside the pages), cdn (needs the network)",
    )
    return p.parse_args(argv)


def _plan(a: argparse.Namespace) -> list[tuple[Path, dict]]:
    """(page path, report data) for every RUN, all read and checked before anything is written."""
    if a.out is not None:
        if a.out.exists() and not a.out.is_dir():
            raise LandscapeError(f"--out {a.out}: exists and is not a folder")
        check_writable(a.out)
    reports = [(run, report_data(run)) for run in a.runs]
    if a.out is None:
        for run, _ in reports:
            check_writable(run)
        return [(run / REPORT, d) for run, d in reports]
    names = [display_name(run) for run, _ in reports]
    for name in names:
        if names.count(name) > 1 or (len(names) > 1 and f"{name}.html" == INDEX):
            raise LandscapeError(
                f"two reports would be named {name}.html in {a.out}; report them into "
                "separate --out folders"
            )
    return [(a.out / f"{name}.html", d) for name, (_, d) in zip(names, reports)]


def _write(pages: list[tuple[Path, dict]], out: Path | None, plotlyjs: str) -> list[Path]:
    written: list[Path] = []
    for path, data in pages:
        written += [p for p in write_page(data, path, plotlyjs) if p not in written]
    if out is not None and len(pages) > 1:
        index = index_page([(path.name, data) for path, data in pages])
        written.append(atomic_write(out / INDEX, index))
    return written


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    plotlyjs = a.plotlyjs or ("inline" if a.out is None else "beside")
    pages = run_cli(lambda: _plan(a))
    if pages is None:
        return 2
    written = run_cli(lambda: _write(pages, a.out, plotlyjs))
    if written is None:
        return 2
    for w in written:
        print(w)
    return 0
