"""A 2-D run's plane: filled ASR contours with the basin edge, the ASR surface in 3-D, and
three panels of what the answers are (harmful, incoherent, useful) with the safe-and-useful
region outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

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
from landscape.errors import LandscapeError
from landscape.utility import utility_measure, utility_score

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
        # A fine grid's coefficients (±0.0075) are long labels: fewer of them stay apart.
        ax.xaxis.set_major_locator(MaxNLocator(5))
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


def _grid_of(points: list[dict], xs, ys, value) -> np.ndarray:
    """`value(point)` over the plane as an array indexed [β, α]; NaN where a point is missing
    or `value` gives None."""
    z = np.full((len(ys), len(xs)), np.nan)
    xi, yi = {x: i for i, x in enumerate(xs)}, {y: i for i, y in enumerate(ys)}
    for p in points:
        v = value(p)
        if v is not None:
            z[yi[float(p["coords"][1])], xi[float(p["coords"][0])]] = v
    return z


def _edges(v) -> np.ndarray:
    """The cell boundaries of `pcolormesh(shading="nearest")` around centres `v`."""
    v = np.asarray(v, dtype=float)
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def _outline(xs, ys, inside: np.ndarray) -> LineCollection:
    """The boundary of the cells `inside` (indexed [β, α]): each cell side that borders a cell
    outside the region or the plane's edge."""
    xe, ye = _edges(xs), _edges(ys)
    rows, cols = inside.shape
    segs = []
    for r, c in zip(*np.nonzero(inside)):
        x0, x1, y0, y1 = xe[c], xe[c + 1], ye[r], ye[r + 1]
        if r == 0 or not inside[r - 1, c]:
            segs.append([(x0, y0), (x1, y0)])
        if r == rows - 1 or not inside[r + 1, c]:
            segs.append([(x0, y1), (x1, y1)])
        if c == 0 or not inside[r, c - 1]:
            segs.append([(x0, y0), (x0, y1)])
        if c == cols - 1 or not inside[r, c + 1]:
            segs.append([(x1, y0), (x1, y1)])
    return LineCollection(segs, colors="white", linewidths=2.2, zorder=4, label="safe and useful")


def _harmful(p: dict):
    # Coherent harm where the answers were labelled; else the ASR of all answers.
    return p["outcomes"]["complied"]["share"] if "outcomes" in p else p.get("asr")


def _incoherent(p: dict):
    return p["outcomes"]["incoherent"]["share"] if "outcomes" in p else None


def _useful(p: dict):
    return utility_score(p["utility"]) if "utility" in p else None


def draw_panels(run: str | Path) -> Figure:
    """The figure of `plot_panels`: three heat maps over the plane on one 0–1 scale, the
    share of harmful answers (complied and coherent; the ASR where the run has no coherence
    labels), the share of incoherent answers, and the utility (accuracy on the benign
    prompts, else 1 − their refusal rate), each with the safe-and-useful region of
    summary.json outlined (white line around its points, which are ringed)."""
    run, config, points, summary, xs, ys, _ = load_plane(run, "panel plot")
    if not any("outcomes" in p or "utility" in p for p in points):
        raise LandscapeError(
            f"{run}: its points carry neither coherence outcomes nor utility (a run made with "
            "--no-coherence and without --utility-prompts): use --kind contour"
        )
    labelled = any("outcomes" in p for p in points)
    with_u = [p for p in points if "utility" in p]
    panels = [
        ("harmful (complied, coherent)" if labelled else "ASR (all answers)", _harmful),
        ("incoherent", _incoherent),
        (f"utility ({utility_measure(with_u[0]['utility'])})" if with_u else "utility", _useful),
    ]
    region = ((summary.get("utility") or {}).get("safe_useful") or {}).get("points") or []
    inside = {tuple(float(c) for c in r["coords"]) for r in region}
    mask = _grid_of(points, xs, ys, lambda p: float(tuple(map(float, p["coords"])) in inside))
    gx, gy = np.meshgrid(xs, ys)
    with styled():
        fig = Figure(figsize=(15.5, 4.9))
        # Shared x too: a panel with nothing measured still spans the plane's range.
        axes = fig.subplots(1, 3, sharey=True, sharex=True)
        for ax, (title, value) in zip(axes, panels):
            ax.grid(False)
            ax.spines[["top", "right"]].set_visible(True)
            z = _grid_of(points, xs, ys, value)
            if np.isnan(z).all():
                # (above the origin's star)
                ax.text(0.5, 0.75, "not measured in this run", ha="center", va="center",
                        transform=ax.transAxes, color="0.35")  # fmt: skip
            else:
                mesh = ax.pcolormesh(xs, ys, z, cmap=CMAP, vmin=0, vmax=1, shading="nearest")
            if inside:
                ax.add_collection(_outline(xs, ys, mask == 1))
            if inside:
                ax.plot(gx[mask == 1], gy[mask == 1], "o", mfc="none", mec="white", ms=9, mew=1.2)
            ax.plot(0, 0, "*", color="white", ms=10, mec="black", ls="none")
            ax.set_title(title)
            ax.set_xlabel(axis_label(config, 0))
            ax.xaxis.set_major_locator(MaxNLocator(4))  # five long labels collide
        axes[0].set_ylabel(axis_label(config, 1))
        fig.colorbar(mesh, ax=list(axes), shrink=0.9, pad=0.015, label="share (0–1)")
        u = summary.get("utility") or {}
        r = u.get("safe_useful")
        note = "no utility measured: no safe-and-useful region"
        if r:
            inc = "" if r["incoherent_max"] is None else f", incoherent ≤ {r['incoherent_max']:.2f}"
            note = (
                f"safe-and-useful region (white, ○): {r['size']} of {r['of']} points — "
                f"ASR ≤ τ = {r['tau']:.2f}{inc}, utility ≥ {r['utility_min']:.2f} "
                f"(origin {u['utility_origin']:.2f} − {u['margin']:g})"
            )
        fig.suptitle(f"What the answers are over the plane ({judge_name(config, summary)} "
                     f"judge) — {note}", fontsize=10)  # fmt: skip
    return fig


def plot_panels(run: str | Path, out: str | Path) -> list[Path]:
    """Harmful, incoherent and utility heat maps over the plane with the safe-and-useful
    region outlined; `<name>-panels.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_panels(run), out, f"{stem(Path(run))}-panels")
