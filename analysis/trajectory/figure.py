"""Trajectories drawn on the landscape: the grid's contour (2-D) or curve (1-D) with one path
per run, markers at the snapshots coloured by measured ASR (predicted where not measured,
hollow where neither), the start marked, and each method's off-plane share in its legend
label, since a plane that holds 2 % of an update must not read as a faithful map of it. PNG,
PDF and an offline plotly page."""

from __future__ import annotations

import html as _html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.curves import draw_curves
from analysis.figures.data import plane_arrays
from analysis.figures.html import FONT, figure_div
from analysis.figures.plane import draw_contour
from analysis.figures.plotlyjs import page, place_plotlyjs
from analysis.figures.style import CMAP, MARKERS, PALETTE, TAU_COLOUR, axis_label, save, styled
from landscape.io import replacing

STEM = "trajectory"
# Method colours: the palette less the basin edge's vermillion.
COLOURS = [c for c in PALETTE if c != TAU_COLOUR]


def _colour(r: dict) -> float | None:
    return r["measured_asr"] if r["measured_asr"] is not None else r["predicted_asr"]


def _share(rows: list[dict], off: str) -> str:
    """The off-plane share of the runs' last snapshots, as the legend says it."""
    last: dict[str, dict] = {}
    for r in rows:
        last[r["run"]] = r
    shares = [r[off] for r in last.values() if r[off] is not None]
    if not shares:
        return "no update"
    lo, hi = min(shares), max(shares)
    word = "off-plane" if off == "off_plane" else "off-line"
    # One decimal near the ends, where whole percent would round 99.6 % up to a plane that
    # holds nothing (or 0.4 % down to one that holds everything).
    fmt = ".1%" if min(lo, 1 - hi) < 0.01 else ".0%"
    a, b = f"{lo:{fmt}}", f"{hi:{fmt}}"
    return f"{word} {a}" if a == b else f"{word} {a}–{b}"


def _runs(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["run"], []).append(r)
    return out


def _overlay(ax, by_method: dict[str, list[dict]], two_d: bool, off: str) -> list:
    """Paths (2-D) or snapshot markers on the curve (1-D), one colour and marker per
    method; returns the legend handles."""
    handles = []
    for i, (key, rows) in enumerate(by_method.items()):
        colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        for run_rows in _runs(rows).values():
            xs = [r["alpha"] for r in run_rows]
            if two_d:
                ys = [r["beta"] for r in run_rows]
                ax.plot(xs, ys, "-", color=colour, lw=1.4, alpha=0.9, zorder=3)
            else:
                ys = [r["predicted_asr"] if r["predicted_asr"] is not None else np.nan
                      for r in run_rows]  # fmt: skip
                m = [(r["alpha"], r["measured_asr"], r["measured_lo"], r["measured_hi"])
                     for r in run_rows if r["measured_asr"] is not None]  # fmt: skip
                if m:
                    a, v, lo, hi = (np.array(t, float) for t in zip(*m))
                    ax.errorbar(a, v, yerr=[v - lo, hi - v], fmt="_", color=colour, ms=9,
                                elinewidth=0.8, alpha=0.7, zorder=3)  # fmt: skip
            c = [_colour(r) for r in run_rows]
            filled = [j for j, v in enumerate(c) if v is not None and not np.isnan(ys[j])]
            hollow = [j for j, v in enumerate(c) if v is None and not np.isnan(ys[j])]
            if filled:
                ax.scatter([xs[j] for j in filled], [ys[j] for j in filled],
                           c=[c[j] for j in filled], cmap=CMAP, vmin=0, vmax=1, marker=marker,
                           s=34, edgecolors=colour, linewidths=1.2, zorder=4)  # fmt: skip
            if hollow:
                ax.scatter([xs[j] for j in hollow], [ys[j] for j in hollow], marker=marker,
                           s=34, facecolors="none", edgecolors=colour, linewidths=1.2,
                           zorder=4)  # fmt: skip
        handles.append(Line2D([], [], color=colour, marker=marker, mfc="white", lw=1.4,
                              label=f"{key} ({_share(rows, off)})"))  # fmt: skip
    return handles


def draw(grid, by_method: dict[str, list[dict]]) -> Figure:
    """The grid's own figure (`analysis.figures`: contour with the basin edge, or the curve
    with its band) with the trajectories over it."""
    two_d = grid.two_d
    off = "off_plane" if two_d else "off_line"
    fig = draw_contour(grid.path) if two_d else draw_curves([grid.path])
    ax = fig.axes[0]
    with styled():
        # The grid figure's own legend entries (origin, basin edge) join the methods'.
        old = ax.get_legend()
        kept = list(old.legend_handles) if old is not None else []
        for h, t in zip(kept, old.get_texts() if old is not None else []):
            h.set_label(t.get_text())
        if old is not None:
            old.remove()
        handles = _overlay(ax, by_method, two_d, off)
        if two_d:  # every path starts at the aligned model: its star stays on top
            ax.plot(0, 0, "*", color="white", ms=14, mec="black", mew=0.8, ls="none", zorder=5)
        where = "plane" if two_d else "line"
        ax.legend(handles=handles + kept, loc="upper left",
                  bbox_to_anchor=(1.3 if two_d else 1.01, 1.0), borderaxespad=0,
                  title=f"method (share of the last update off the grid's {where})",
                  title_fontsize=8)  # fmt: skip
        what = "filled: measured ASR, else predicted; hollow: neither"
        ax.set_title(f"Fine-tuning trajectories on {grid.path.name} ({what})", fontsize=9)
    return fig


def _hover(r: dict, two_d: bool) -> str:
    off = r["off_plane"] if two_d else r["off_line"]
    parts = [
        f"<b>{_html.escape(r['method'])}</b> ({_html.escape(r['run'])})",
        f"step {r['step']}" + (f" after {_html.escape(r['stage'])}" if r["stage"] else ""),
        f"α = {r['alpha']:+.4g}" + (f", β = {r['beta']:+.4g}" if two_d else ""),
        "off-plane share: " + ("–" if off is None else f"{off:.1%}"),
        "predicted ASR: "
        + ("–" if r["predicted_asr"] is None else f"{r['predicted_asr']:.3f}")
        + f" ({r['predicted']})",
    ]
    if r["measured_asr"] is not None:
        parts.append(
            f"measured ASR: {r['measured_asr']:.3f} "
            f"[{r['measured_lo']:.3f}, {r['measured_hi']:.3f}]"
        )
    if r["task_loss"] is not None:
        parts.append(f"task loss {r['task_loss']:.3f}")
    return "<br>".join(parts)


def draw_html(grid, by_method: dict[str, list[dict]]):
    """The plotly figure: the grid's ASR as a heat map (2-D) or curve (1-D) and every run's
    path, hover showing each snapshot's row."""
    import plotly.graph_objects as go

    two_d = grid.two_d
    off = "off_plane" if two_d else "off_line"
    fig = go.Figure()
    if two_d:
        xs, ys, f = plane_arrays(grid.points)
        z = np.where(np.isnan(f["asr"]), None, f["asr"]).tolist()
        fig.add_trace(go.Heatmap(x=xs, y=ys, z=z, zmin=0, zmax=1, colorscale="Viridis",
                                 colorbar={"title": {"text": "ASR"}}, name="grid ASR",
                                 hovertemplate="α %{x}<br>β %{y}<br>ASR %{z:.3f}<extra></extra>"))  # fmt: skip
    else:
        pts = sorted(grid.points, key=lambda p: p["coords"][0])
        fig.add_trace(go.Scatter(x=[p["coords"][0] for p in pts], y=[p["asr"] for p in pts],
                                 mode="lines", line={"color": "grey"}, name="grid ASR"))  # fmt: skip
    for i, (key, rows) in enumerate(by_method.items()):
        colour = COLOURS[i % len(COLOURS)]
        for j, run_rows in enumerate(_runs(rows).values()):
            x = [r["alpha"] for r in run_rows]
            y = [r["beta"] if two_d else r["predicted_asr"] for r in run_rows]
            fig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers" if two_d else "markers",
                line={"color": colour}, legendgroup=key, showlegend=j == 0,
                name=f"{_html.escape(key)} ({_share(rows, off)})",
                marker={"color": colour, "size": 8, "line": {"color": "black", "width": 0.5}},
                text=[_hover(r, two_d) for r in run_rows], hovertemplate="%{text}<extra></extra>",
            ))  # fmt: skip
    cfg = grid.config
    fig.update_xaxes(title_text=axis_label(cfg, 0))
    fig.update_yaxes(title_text=axis_label(cfg, 1) if two_d else "attack success rate")
    fig.update_layout(
        title=f"Fine-tuning trajectories on {_html.escape(grid.path.name)}",
        font=FONT,
        template="plotly_white",
        hoverlabel={"align": "left"},
        autosize=True,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


_CSS = "html, body {margin: 0; height: 100%;} .figure {width: 100%; height: 100vh;}"


def write_figures(grid, by_method: dict[str, list[dict]], out: Path, plotlyjs: str) -> list[Path]:
    """`trajectory.{png,pdf}` and `trajectory.html` in `out`."""
    written = save(draw(grid, by_method), out, STEM)
    place_plotlyjs(plotlyjs, out)
    path = out / f"{STEM}.html"
    body = f'<div class="figure">{figure_div(draw_html(grid, by_method), "trajectory")}</div>'
    title = f"Fine-tuning trajectories on {grid.path.name}"
    with replacing(path) as tmp:
        tmp.write_text(page(title, body, plotlyjs, _CSS), "utf-8")
    return [*written, path]
