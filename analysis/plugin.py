"""The figures' entry in the core's registries: a finished grid run gets its landscape.png and
its report.html."""

from __future__ import annotations


def _draw(folder, kind: str) -> None:
    from analysis.figures import plot_run

    plot_run(folder)


def _report(folder, kind: str) -> None:
    from analysis.report import write_run_report
    from landscape.cli import describe
    from landscape.errors import LandscapeError

    try:
        write_run_report(folder)
    except OSError as e:  # a full disk costs the report, not the finished run (a logged warning)
        raise LandscapeError(f"report.html not written: {describe(e)}") from None


def register() -> None:
    from landscape.registry import AFTER_RUN

    AFTER_RUN.register("landscape.png", _draw)
    AFTER_RUN.register("report.html", _report)
