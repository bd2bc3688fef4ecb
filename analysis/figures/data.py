"""A run's points shaped for drawing: lines through the origin, the plane as arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.runs import load_run
from landscape.errors import LandscapeError

FIELDS = ("asr", "lo", "hi", "n", "n_unsafe")


def need_points(run: Path, points: list[dict]) -> None:
    if not points:
        raise LandscapeError(f"{run}: the run has no finished points yet")


def need_2d(run: Path, config: dict, what: str) -> None:
    if len(config["dirs"]) != 2:
        raise LandscapeError(
            f"{run}: a {what} needs a 2-D run (two directions); this run is 1-D "
            f"along {config['dirs'][0]} (use --kind curve)"
        )


def plane_arrays(points: list[dict]) -> tuple[list[float], list[float], dict[str, np.ndarray]]:
    """The 2-D points as arrays indexed [β, α] (rows: y) for asr/lo/hi/n/n_unsafe; NaN = missing."""
    xs = sorted({float(p["coords"][0]) for p in points})
    ys = sorted({float(p["coords"][1]) for p in points})
    fields = {f: np.full((len(ys), len(xs)), np.nan) for f in FIELDS}
    xi = {x: i for i, x in enumerate(xs)}
    yi = {y: i for i, y in enumerate(ys)}
    for p in points:
        r, c = yi[float(p["coords"][1])], xi[float(p["coords"][0])]
        for f, arr in fields.items():
            if p.get(f) is not None:
                arr[r, c] = p[f]
    return xs, ys, fields


def load_plane(run: str | Path, what: str):
    """(run, config, points, summary, xs, ys, arrays) of a 2-D run with at least two values of
    each coefficient; LandscapeError naming `what` otherwise."""
    run = Path(run)
    config, points, summary = load_run(run)
    need_2d(run, config, what)
    need_points(run, points)
    xs, ys, f = plane_arrays(points)
    if len(xs) < 2 or len(ys) < 2:
        raise LandscapeError(
            f"{run}: a {what} needs finished points at two or more values of each coefficient"
        )
    return run, config, points, summary, xs, ys, f


def axis_lines(config: dict, points: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(direction, norm, points sorted by coefficient) for a 1-D run, or the two lines through
    the origin of a 2-D run (those of two or more points)."""
    if len(config["dirs"]) == 1:
        return [(config["dirs"][0], config["norm"], sorted(points, key=lambda p: p["coords"][0]))]
    out = []
    for ax in (0, 1):
        other = 1 - ax
        line = [p for p in points if abs(p["coords"][other]) < 1e-12]
        if len(line) >= 2:
            line.sort(key=lambda p: p["coords"][ax])
            line = [{**p, "coords": [p["coords"][ax]]} for p in line]
            name = config["dirs"][ax] if ax == 0 else f"{config['dirs'][1]} ⊥ {config['dirs'][0]}"
            out.append((name, config["norm"], line))
    return out


def load_lines(run: str | Path) -> tuple[dict, dict, list[tuple[str, str, list[dict]]]]:
    """(config, summary, lines) of a run drawn as curves; LandscapeError when it has none."""
    run = Path(run)
    config, points, summary = load_run(run)
    need_points(run, points)
    lines = axis_lines(config, points)
    if not lines:
        raise LandscapeError(f"{run}: no line of two or more finished points through the origin")
    return config, summary, lines
