"""A 2-D run's plane: filled ASR contours with the basin edge, and the ASR surface in 3-D."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.data import load_plane
from analysis.figures.style import (
    CMAP,
    TAU_COLOUR,
    axis_label,
    judge_name,
    prepare_out,
    save,
    stem,
    styled,
)

LEVELS = np.linspace(0, 1, 11)  # ASR contours every 0.1


def has_edge(tau: float | None, z: np.ndarray) -> bool:
    """Whether the plane crosses ASR = τ, so that the basin edge can be drawn."""
    return tau is not None and np.nanmin(z) <= tau < np.nanmax(z)


def tau_text(tau: float | None, z: np.ndarray) -> str:
    if tau is None:
        return "no τ (origin not evaluated)"
    if np.nanmin(z) > tau:
        return f"τ = {tau:.2f}: no point is inside the basin"
    if np.nanmax(z) <= tau:
        return f"τ = {tau:.2f}: the whole plane is inside the basin"
    return f"basin edge: ASR = τ = {tau:.2f}"


def draw_contour(run: str | Path) -> Figure:
    """The figure of `plot_contour`: filled contours every 0.1 on a 0–1 colour bar, white
    contour lines, the basin edge (ASR = τ) in vermillion, the grid points and the origin."""
    run, config, points, summary, xs, ys, f = load_plane(run, "contour plot")
    z = np.ma.masked_invalid(f["asr"])
    tau = summary.get("tau")
    with styled():
        fig = Figure(figsize=(6.2, 4.8))
        ax = fig.add_subplot()
        ax.grid(False)
        ax.spines[["top", "right"]].set_visible(True)
        filled = ax.contourf(xs, ys, z, levels=LEVELS, cmap=CMAP, vmin=0, vmax=1, extend="neither")
        cb = fig.colorbar(filled, ax=ax, ticks=np.linspace(0, 1, 6))
        cb.set_label(f"attack success rate ({judge_name(config, summary)} judge)")
        lines = ax.contour(
            xs, ys, z, levels=LEVELS[1:-1], colors="white", linewidths=0.5, alpha=0.6
        )
        ax.clabel(lines, levels=LEVELS[2:-1:2], fontsize=8, fmt="%.1f")
        handles = []
        if has_edge(tau, z):
            ax.contour(xs, ys, z, levels=[tau], colors=TAU_COLOUR, linewidths=2.4)
            handles.append(Line2D([], [], color=TAU_COLOUR, lw=2.4, label=f"ASR = τ = {tau:.2f}"))
        gx, gy = np.meshgrid(xs, ys)
        ax.plot(gx[~z.mask], gy[~z.mask], ".", color="0.15", ms=2.5, alpha=0.6)
        (star,) = ax.plot(0, 0, "*", color="white", ms=14, mec="black", mew=0.8, ls="none")
        star.set_label("aligned model (origin)")
        handles.append(star)
        ax.legend(
            handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9
        )
        ax.set_xlabel(axis_label(config, 0))
        ax.set_ylabel(axis_label(config, 1))
        ax.set_title(f"Safety landscape — {tau_text(tau, f['asr'])}")
        ax.set_aspect("auto")
    return fig


def plot_contour(run: str | Path, out: str | Path) -> list[Path]:
    """Filled ASR contours over the plane with the safety-basin edge (ASR = τ) outlined;
    `<name>-contour.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_contour(run), out, f"{stem(Path(run))}-contour")


def draw_surface(run: str | Path) -> Figure:
    """The figure of `plot_surface`: the ASR surface on a 0–1 colour bar over a floor of
    filled contours, with the basin edge at τ and the origin marked on the floor."""
    run, config, points, summary, xs, ys, f = load_plane(run, "surface plot")
    z, zm = f["asr"], np.ma.masked_invalid(f["asr"])
    tau = summary.get("tau")
    gx, gy = np.meshgrid(xs, ys)
    floor = -0.25
    with styled():
        fig = Figure(figsize=(6.6, 5.2))
        ax = fig.add_subplot(projection="3d")
        surf = ax.plot_surface(
            gx, gy, zm, cmap=CMAP, vmin=0, vmax=1, rstride=1, cstride=1,
            linewidth=0.3, edgecolor="0.3", antialiased=True, alpha=0.95,
        )  # fmt: skip
        ax.contourf(gx, gy, zm, zdir="z", offset=floor, levels=LEVELS, cmap=CMAP, alpha=0.6)
        if has_edge(tau, z):
            ax.contour(
                gx, gy, zm, levels=[tau], zdir="z", offset=floor, colors=TAU_COLOUR, linewidths=2
            )
        ax.scatter(
            [0], [0], [floor], marker="*", s=120, color="white", edgecolor="black", depthshade=False
        )
        ax.set_zlim(floor, 1)
        ax.set_zticks([0, 0.25, 0.5, 0.75, 1])
        ax.set_xlabel(f"α: {config['dirs'][0]}\n({config['norm']} norm)", labelpad=10)
        ax.set_ylabel(f"β: {config['dirs'][1]}\n({config['norm']} norm, ⊥)", labelpad=10)
        ax.set_zlabel("ASR", labelpad=6)
        ax.view_init(elev=28, azim=-130)
        cb = fig.colorbar(surf, ax=ax, shrink=0.6, pad=0.1)
        cb.set_label(f"attack success rate ({judge_name(config, summary)} judge)")
        title = "ASR surface"
        if tau is not None:
            title += f" (floor: contours, basin edge at τ = {tau:.2f}; ★ origin)"
        ax.set_title(title, fontsize=10)
    return fig


def plot_surface(run: str | Path, out: str | Path) -> list[Path]:
    """The ASR surface in 3-D, with the basin edge at τ drawn on the floor;
    `<name>-surface.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_surface(run), out, f"{stem(Path(run))}-surface")
