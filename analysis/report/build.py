"""Which report a folder gets, and writing it: `report.html` in a run folder, or pages in a
folder of reports."""

from __future__ import annotations

import html
from pathlib import Path

from analysis.figures.plotlyjs import page, place_plotlyjs
from analysis.report.asft import asft_report, is_asft
from analysis.report.grid import grid_report
from analysis.report.page import render
from analysis.runs import is_grid_run
from landscape.errors import LandscapeError
from landscape.io import atomic_write

REPORT = "report.html"


def report_data(folder: str | Path) -> dict:
    """The report's data for a grid run, an AsFT comparison or an AsFT sweep folder; a
    one-line LandscapeError for anything else (a shard, an unfinished run, another folder)."""
    folder = Path(folder)
    if not folder.exists():
        raise LandscapeError(f"no such folder: {folder}")
    if not folder.is_dir():
        raise LandscapeError(f"{folder} is a file; a run folder is expected")
    if is_grid_run(folder):
        return grid_report(folder)
    if is_asft(folder):
        return asft_report(folder)
    raise LandscapeError(
        f"{folder} is not a run folder: neither a grid run (config.json + points.jsonl), an AsFT "
        "comparison (results.csv + before.json) nor an AsFT sweep (sweep.csv)"
    )


def write_page(data: dict, path: Path, plotlyjs: str) -> list[Path]:
    """`path` holding the report of `data` (written whole or not at all), with plotly.min.js
    beside it in `beside` mode; the files written."""
    text = render(data, plotlyjs)  # before anything is written: a failure leaves nothing
    js = place_plotlyjs(plotlyjs, path.parent)
    atomic_write(path, text)
    return [path] + ([js] if js else [])


def write_run_report(folder: str | Path, plotlyjs: str = "inline") -> Path:
    """`report.html` in a finished run folder; by default one self-contained file that opens
    anywhere (plotly.js inlined)."""
    folder = Path(folder)
    return write_page(report_data(folder), folder / REPORT, plotlyjs)[0]


def index_page(entries: list[tuple[str, dict]]) -> str:
    """A page linking the reports of one --out folder: (file name, report data) each."""
    items = "".join(
        f'<li><a href="{html.escape(name)}">{html.escape(d["title"])}</a>'
        f'<br><span class="note">{html.escape(d["subtitle"])}</span></li>'
        for name, d in entries
    )
    body = f'<main><h1>Reports</h1><ul class="index">{items}</ul></main>'
    css = "body {font: 15px/1.5 Arial, sans-serif; margin: 20px;} li {margin: 8px 0;} .note {color: #555;}"
    return page("Reports", body, None, css)
