"""`trajectories`: fine-tuning runs' snapshots placed on a grid's landscape, from the folders.

Every input is read and checked before anything is written: the grid (its points, its aligned
model unchanged, its directions rebuilt and matching their fingerprints), the runs (each with
snapshots, each started from the grid's aligned model) and, with `measure`, the grid's
prompts, judges and generator. Then, per run, every snapshot's update is projected onto the
grid's plane, the grid's ASR interpolated there and, with `measure`, the ASR measured at the
snapshot itself; the tables, summary.json and the figures follow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from analysis.figures.plotlyjs import check_mode
from analysis.figures.style import prepare_out
from analysis.trajectory.figure import write_figures
from analysis.trajectory.interp import Surface
from analysis.trajectory.measure import Measurer, snapshot_key
from analysis.trajectory.plane import Grid, project
from analysis.trajectory.runs import FineTuneRun, check_start, find_runs
from analysis.trajectory.table import method_key, method_summary, write_tables
from landscape.io import write_json

log = logging.getLogger(__name__)

SUMMARY = "summary.json"


def _names(runs: list[FineTuneRun]) -> list[str]:
    """A folder name per run, made unique where runs from several places share one."""
    names, seen = [], set()
    for r in runs:
        name, i = r.name, 2
        while name in seen:
            name, i = f"{r.name}-{i}", i + 1
        seen.add(name)
        names.append(name)
    return names


def _measured(point: dict | None) -> dict:
    if point is None:
        return {"measured_asr": None, "measured_lo": None, "measured_hi": None, "measured_n": None}
    return {
        "measured_asr": point["asr"],
        "measured_lo": point["lo"],
        "measured_hi": point["hi"],
        "measured_n": point["n"],
    }


def _origin(grid: Grid) -> dict | None:
    """The grid's point at the origin: the aligned model, where every run starts."""
    return next((p for p in grid.points if all(c == 0 for c in p["coords"])), None)


def _rows(grid, surface, run, name, key, model, axes, measured, measure) -> list[dict]:
    """The start (step 0: the aligned model, the grid's origin) and every snapshot of `run`."""
    two_d, off = grid.two_d, "off_plane" if grid.two_d else "off_line"
    common = {"method": key, "run": name, "seed": run.seed, "p": run.p}
    zero = [0.0] * len(axes)
    predicted, where = surface.predict(zero)
    rows = [
        {
            **common, "step": 0, "stage": None, "alpha": 0.0, **({"beta": 0.0} if two_d else {}),
            off: None, "update_norm": 0.0, "predicted_asr": predicted, "predicted": where,
            **_measured(_origin(grid) if measure else None),
            "task_loss": None, "penalty": None, "fa": None,
        }
    ]  # fmt: skip
    for i, record in enumerate(run.index):
        proj = project(run.delta(record, model), axes)
        predicted, where = surface.predict(proj.coords)
        final = i == len(run.index) - 1 and "fa" in run.result
        rows.append(
            {
                **common,
                "step": record["step"],
                "stage": record.get("stage"),
                "alpha": proj.coords[0],
                **({"beta": proj.coords[1]} if two_d else {}),
                off: proj.off_share,
                "update_norm": proj.norm,
                "predicted_asr": predicted,
                "predicted": where,
                **_measured(measured.get(snapshot_key(record))),
                "task_loss": record.get("task_loss"),
                "penalty": record.get("penalty"),
                "fa": run.result["fa"] if final else None,
            }
        )
    return rows


def trajectories(
    grid_path: str | Path,
    run_paths: list[str | Path],
    out: str | Path,
    measure: bool = False,
    plotlyjs: str = "beside",
) -> dict:
    """Place the snapshots of the runs in `run_paths` (run folders or comparison folders) on
    the landscape of the grid run `grid_path`; write the tables, summary.json and figures
    into `out` and return the summary. `measure`: also generate at every snapshot with the
    grid's own settings (one grid point each; kept in `out/measured/`, reused when run
    again)."""
    check_mode(plotlyjs)
    grid = Grid.open(grid_path)
    runs = find_runs([Path(p) for p in run_paths])
    out = prepare_out(out)
    model, tokenizer = grid.load_model(grid.cfg.device if measure else "cpu")
    axes, checked = grid.directions(model)
    check_start(runs, model, grid.path, grid.model_paths()[1])
    names = _names(runs)
    measurer = Measurer(grid, model, tokenizer, out) if measure else None
    if measurer is not None:
        for run, name in zip(runs, names):
            measurer.check(run, name)

    out.mkdir(parents=True, exist_ok=True)
    surface = Surface(grid.points)
    several_p = len({r.p for r in runs}) > 1
    by_method: dict[str, list[dict]] = {}
    for run, name in zip(runs, names):
        measured = {}
        if measurer is not None:
            measured = measurer.measure(run, name, lambda rec, run=run: run.delta(rec, model))
        key = method_key(run.label, run.p, several_p)
        rows = _rows(grid, surface, run, name, key, model, axes, measured, measure)
        by_method.setdefault(key, []).extend(rows)
    off = "off_plane" if grid.two_d else "off_line"
    summary = {
        "grid": str(grid.path),
        "dirs": grid.cfg.dirs,
        "norm": grid.cfg.norm,
        "scope": grid.cfg.scope,
        "judge": str(grid.config.get("judge", "")).split(",")[0],
        "fingerprint_aligned": grid.env["fingerprint_aligned"],
        "directions_checked": checked,
        "measured": measure,
        "methods": {k: method_summary(rows, off) for k, rows in by_method.items()},
        "runs": {
            name: {
                "path": str(r.path),
                "method": r.label,
                "seed": r.seed,
                "p": r.p,
                "snapshots": len(r.index),
            }
            for r, name in zip(runs, names)
        },  # fmt: skip
    }
    write_tables(out, by_method, grid.two_d)
    write_json(out / SUMMARY, summary)
    write_figures(grid, by_method, out, plotlyjs)
    return summary
