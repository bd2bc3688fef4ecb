"""The HS–FA frontier of a sweep (`python -m landscape.asft sweep`): harmful score against
fine-tuning accuracy, one line per method (and control) through its λ values.

Each point is the mean over seeds; thin bars are the Wilson 95% interval of the rate over
all the seeds' answers pooled, thick translucent bars the seeds' min–max. The model before
fine-tuning is the star. A method beats another only where its line lies below and to the
right of the other's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.figures.style import look, prepare_out, save, stem, styled
from landscape.errors import LandscapeError
from landscape.metrics import wilson

BEFORE = "aligned (before)"
_COLUMNS = ("method", "lam", "seed", "hs", "fa", "n_hs", "n_fa")


def frontier_records(folder: str | Path) -> pd.DataFrame:
    """`folder/sweep.csv`, checked: its columns, and at least one run besides the before
    evaluation."""
    path = Path(folder) / "sweep.csv"
    if not path.is_file():
        raise LandscapeError(
            f"{folder}: not a sweep folder (no sweep.csv; run landscape.asft sweep)"
        )
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        raise LandscapeError(f"{path} is not a readable CSV") from None
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise LandscapeError(f"{path} lacks the columns {', '.join(missing)}")
    if not (df["method"] != BEFORE).any():
        raise LandscapeError(f"{path} holds no fine-tuning run")
    return df


def _pooled(rates: pd.Series, ns: pd.Series) -> tuple[float, float]:
    """Wilson 95% interval of a rate over the pooled answers of several runs (no bar when
    the runs recorded no counts)."""
    if ns.isna().any():
        m = float(rates.mean())
        return m, m
    k = int(sum(round(r * n) for r, n in zip(rates, ns)))
    return wilson(k, int(ns.sum()))


def frontier_points(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per method: one row per λ (ordered) with the mean over seeds, the seeds' min and max,
    the pooled Wilson interval and the number of seeds `n_seeds`, for HS and FA (in %)."""
    out = {}
    for method, g in df.groupby("method", sort=False):
        rows = []
        for lam, h in g.groupby(g["lam"].fillna(-1.0), sort=True):
            row = {"lam": None if lam < 0 else float(lam), "n_seeds": len(h)}
            for key in ("hs", "fa"):
                lo, hi = _pooled(h[key], h[f"n_{key}"])
                row |= {
                    key: 100 * h[key].mean(),
                    f"{key}_min": 100 * h[key].min(),
                    f"{key}_max": 100 * h[key].max(),
                    f"{key}_lo": 100 * lo,
                    f"{key}_hi": 100 * hi,
                }
            rows.append(row)
        out[str(method)] = pd.DataFrame(rows)
    return out


def draw_frontier(folder: str | Path) -> Figure:
    """The figure of `plot_frontier`."""
    df = frontier_records(folder)
    points = frontier_points(df)
    seeds = sorted(df["seed"].dropna().unique().tolist())
    with styled():
        fig = Figure(figsize=(6.4, 4.8))
        ax = fig.subplots()
        i = 0
        for method, pts in points.items():
            x, y = pts["fa"].to_numpy(), pts["hs"].to_numpy()
            if method == BEFORE:
                ax.plot(x, y, marker="*", markersize=14, color="black", ls="none", label=method)
                continue
            colour, marker = look(i)
            i += 1
            spread = dict(color=colour, alpha=0.25, lw=5, capsize=0, ls="none")
            ax.errorbar(x, y, xerr=[x - pts["fa_min"], pts["fa_max"] - x],
                        yerr=[y - pts["hs_min"], pts["hs_max"] - y], **spread)  # fmt: skip
            ax.errorbar(
                x, y, xerr=[x - pts["fa_lo"], pts["fa_hi"] - x],
                yerr=[y - pts["hs_lo"], pts["hs_hi"] - y],
                color=colour, marker=marker, capsize=2, lw=1.4, label=method,
            )  # fmt: skip
            for xv, yv, lam in zip(x, y, pts["lam"]):
                if lam is not None and not (isinstance(lam, float) and math.isnan(lam)):
                    ax.annotate(f"λ={lam:g}", (xv, yv), textcoords="offset points",
                                xytext=(4, 4), fontsize=7, color=colour)  # fmt: skip
        ax.set_xlabel("fine-tuning accuracy FA (%) →")
        ax.set_ylabel("harmful score HS (%) ↓")
        ax.set_ylim(-3, 103)
        lo = np.nanmin(df["fa"]) * 100
        ax.set_xlim(max(0, lo - 8), 101)
        p = df["p"].iloc[0] if "p" in df.columns else "?"
        ax.set_title(
            f"HS–FA frontier (p = {p}, seeds {', '.join(f'{s:g}' for s in seeds)}; "
            "bars: Wilson 95%, shade: seed min–max)",
            fontsize=9,
        )
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
    return fig


def plot_frontier(folder: str | Path, out: str | Path) -> list[Path]:
    """`<name>-frontier.{png,pdf}` in `out`, from the sweep folder `folder`."""
    out = prepare_out(out)
    return save(draw_frontier(folder), out, f"{stem(Path(folder))}-frontier")
