"""The run report: one HTML page per run folder that opens anywhere, offline too.

A grid run's `report.html` holds its settings, its summary (ASR at the origin, τ, EPL with
brackets, VISAGE, cosine, the judges' agreement and κ), the landscape with hover, and, on
clicking a point, that point's answers with each judge's verdict. An AsFT comparison's
report holds its HS/FA table and diagnostics, a sweep's its HS–FA frontier. Every report is
made from the folder alone: the grid writes one at the end of each run (analysis.plugin),
and `python -m analysis.report` (re)makes them at any time.

- `build`: `report_data` (which report a folder gets), `write_page`, `write_run_report`;
- `grid`, `asft`: what each kind of folder's report shows;
- `page`: the HTML (tables escaped here; the data as JSON for `report.js`);
- `cli`: `main`, the command line.
"""

from analysis.report.build import REPORT, report_data, write_page, write_run_report
from analysis.report.cli import main

__all__ = ["REPORT", "main", "report_data", "write_page", "write_run_report"]
