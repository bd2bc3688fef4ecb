"""`landscape.png` in a finished run folder: drawn after every grid run (analysis.plugin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figures.data import need_points, plane_arrays
from analysis.figures.style import (
    CMAP,
    PALETTE,
    TAU_COLOUR,
    axis_label,
    judge_name,
    save_figure,
    styled,
)
from analysis.runs import load_run

RUN_LEVELS = [0.2, 0.4, 0.6, 0.8]


def _curve(ax, config: dict, points: list[dict], judge: str, tau) -> None:
    pts = sorted(points, key=lambda p: p["coords"][0])
    x = [p["coords"][0] for p in pts]
    ax.fill_between(
        x,
        [p["lo"] for p in pts],
        [p["hi"] for p in pts],
        color=PALETTE[0],
        alpha=0.25,
        lw=0,
        label="Wilson 95%",
    )
    ax.plot(x, [p["asr"] for p in pts], "o-", color=PALETTE[0], label=f"ASR ({judge})")
    if tau is not None:
        ax.axhline(tau, color=TAU_COLOUR, ls="--", lw=1, label=f"τ = {tau:.2f}")
    ax.set_xlabel(axis_label(config, 0))
    ax.set_ylabel("attack success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best")


def _plane(fig, ax, config: dict, points: list[dict], judge: str, tau) -> None:
    ax.grid(False)
    ax.spines[["top", "right"]].set_visible(True)
    xs, ys, f = plane_arrays(points)
    z = f["asr"]
    mesh = ax.pcolormesh(xs, ys, z, cmap=CMAP, vmin=0, vmax=1, shading="nearest")
    fig.colorbar(mesh, ax=ax, label=f"ASR ({judge})")
    if len(xs) > 1 and len(ys) > 1 and not np.isnan(z).all():
        zm = np.ma.masked_invalid(z)
        cs = ax.contour(xs, ys, zm, levels=RUN_LEVELS, colors="white", linewidths=0.8)
        ax.clabel(cs, fontsize=8)
        if tau is not None and np.nanmin(z) <= tau < np.nanmax(z):
            ax.contour(xs, ys, zm, levels=[tau], colors=TAU_COLOUR, linewidths=2)
    ax.plot(0, 0, "*", color="white", ms=12, mec="black")
    ax.set_xlabel(axis_label(config, 0))
    ax.set_ylabel(axis_label(config, 1))


def draw_run(run: str | Path) -> Figure:
    """The figure of `plot_run`: the 1-D ASR curve with its Wilson band and τ, or the 2-D ASR
    heat map (0–1 colour bar) with contour lines and the basin edge at τ."""
    run = Path(run)
    config, points, summary = load_run(run)
    need_points(run, points)
    tau = summary.get("tau")
    judge = judge_name(config, summary)
    two_d = len(config["dirs"]) == 2
    with styled():
        fig = Figure(figsize=(6, 4.5))
        ax = fig.add_subplot()
        if two_d:
            _plane(fig, ax, config, points, judge, tau)
        else:
            _curve(ax, config, points, judge, tau)
        edge = f" (basin edge: ASR = τ = {tau:.2f})" if tau is not None and two_d else ""
        ax.set_title("Safety landscape" + edge)
        fig.tight_layout()
    return fig


def plot_run(run: str | Path) -> Path:
    """`landscape.png` in the run folder: the 1-D ASR curve with its Wilson band, or the 2-D
    ASR heat map with contour lines and the basin edge at τ."""
    run = Path(run)
    return save_figure(draw_run(run), run / "landscape.png", dpi=150, bbox_inches=None)
