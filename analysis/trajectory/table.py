"""The trajectory tables: one row per snapshot (and the start), one table per method, and
the summary of how well the landscape predicts the measured ASR."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from landscape.io import atomic_write, write_json


def method_key(label: str, p: float, several_p: bool) -> str:
    """The method a run belongs to in the tables: its comparison label, with its poison ratio
    when the runs have several."""
    return f"{label} p={p:g}" if several_p else label


def slug(key: str) -> str:
    """A method's name as a file name."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", key).strip("-") or "method"


def columns(two_d: bool) -> list[str]:
    """The table's columns: β only on a plane; the off-plane share is the off-line share of
    a 1-D grid's line."""
    off = "off_plane" if two_d else "off_line"
    return [
        "method", "run", "seed", "p", "step", "stage", "alpha", *(["beta"] if two_d else []),
        off, "update_norm", "predicted_asr", "predicted", "measured_asr", "measured_lo",
        "measured_hi", "measured_n", "task_loss", "penalty", "fa",
    ]  # fmt: skip


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than two pairs or no variation in either."""
    if len(x) < 2:
        return None
    a, b = np.asarray(x, float), np.asarray(y, float)
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float((da * da).sum()) * float((db * db).sum()))
    return float((da * db).sum()) / den if den > 0 else None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def method_summary(rows: list[dict], off: str) -> dict:
    """Per method: how many snapshots (the start excluded: it is the grid's origin, where
    prediction and measurement are the same point), how many the grid predicts and how many
    were measured, Pearson's r and the mean absolute error between predicted and measured
    ASR over the snapshots that have both, and the off-plane share of the runs' last
    snapshots (the update the run ends with) and over all snapshots."""
    snaps = [r for r in rows if r["step"] > 0]
    pairs = [
        (r["predicted_asr"], r["measured_asr"])
        for r in snaps
        if r["predicted_asr"] is not None and r["measured_asr"] is not None
    ]
    last: dict[str, dict] = {}
    for r in snaps:
        last[r["run"]] = r  # rows are in step order per run
    finals = [r[off] for r in last.values() if r[off] is not None]
    shares = [r[off] for r in snaps if r[off] is not None]
    return {
        "runs": len({r["run"] for r in rows}),
        "snapshots": len(snaps),
        "predicted": sum(r["predicted_asr"] is not None for r in snaps),
        "outside": sum(r["predicted"] == "outside" for r in snaps),
        "measured": sum(r["measured_asr"] is not None for r in snaps),
        "pairs": len(pairs),
        "pearson": pearson([p for p, _ in pairs], [m for _, m in pairs]),
        "mae": _mean([abs(p - m) for p, m in pairs]),
        f"{off}_final": _mean(finals),
        f"{off}_final_min": min(finals) if finals else None,
        f"{off}_final_max": max(finals) if finals else None,
        f"{off}_mean": _mean(shares),
    }


def _csv(rows: list[dict], cols: list[str]) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})
    return buf.getvalue()


def write_tables(out: Path, by_method: dict[str, list[dict]], two_d: bool) -> list[Path]:
    """`table-<method>.csv` and `.json` for every method."""
    cols, written = columns(two_d), []
    for key, rows in by_method.items():
        stem = out / f"table-{slug(key)}"
        written.append(atomic_write(stem.with_suffix(".csv"), _csv(rows, cols)))
        records = [{k: r.get(k) for k in cols} for r in rows]
        written.append(write_json(stem.with_suffix(".json"), records))
    return written
