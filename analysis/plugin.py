"""The figures' entry in the core's registries: a finished grid run gets its landscape.png."""

from __future__ import annotations


def _draw(folder, kind: str) -> None:
    from analysis.figures import plot_run

    plot_run(folder)


def register() -> None:
    from landscape.registry import AFTER_RUN

    AFTER_RUN.register("landscape.png", _draw)
