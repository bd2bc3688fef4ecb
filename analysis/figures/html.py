"""The interactive page: plotly, with each point's ASR, interval and two answers on hover.

The page draws offline (plotly.js inlined or beside it, `analysis.figures.plotlyjs`) and
fills the window: the layout has no fixed size, and plotly's `responsive` config reflows it
when the window changes. The run report (`analysis.report`) draws the same figure."""

from __future__ import annotations

import html as _html
from pathlib import Path

import numpy as np

from analysis.figures.data import need_points, plane_arrays
from analysis.figures.plotlyjs import page, place_plotlyjs
from analysis.figures.style import PALETTE, TAU_COLOUR, axis_label, judge_name, prepare_out, stem
from analysis.runs import load_generations, load_run
from landscape.io import replacing

FONT = {"family": "Arial, Helvetica, sans-serif", "size": 14}


def _short(text: str, limit: int) -> str:
    """One line, at most `limit` characters, HTML-escaped (answers are model output)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return _html.escape(text, quote=True)


def _hover(config: dict, p: dict, gens: list[dict], judge: str, answers: int = 2) -> str:
    coords = "<br>".join(
        f"{'αβ'[i]} ({_html.escape(d)}) = {p['coords'][i]:+.4g}"
        for i, d in enumerate(config["dirs"])
    )
    lines = [
        coords,
        f"<b>ASR = {p['asr']:.3f}</b> ({p.get('n_unsafe', '?')}/{p.get('n', '?')}, {_html.escape(judge)})",
        f"Wilson 95%: [{p['lo']:.3f}, {p['hi']:.3f}]",
    ]
    if answers == 0:  # the report shows them on click instead
        return "<br>".join(lines + ["<i>click for this point's answers</i>"])
    for i, g in enumerate(gens[:answers], 1):
        verdict = g.get("unsafe", {}).get(judge)
        tag = "" if verdict is None else (" [unsafe]" if verdict else " [safe]")
        lines.append(f"<i>Q{i}:</i> {_short(g.get('prompt', ''), 70)}")
        lines.append(f"<i>A{i}{tag}:</i> {_short(g.get('answer', ''), 110)}")
    if not gens:
        lines.append("<i>(no answers stored for this point)</i>")
    return "<br>".join(lines)


def _curve(config: dict, points: list[dict], hover: dict, judge: str, tau, hint: str):
    import plotly.graph_objects as go

    pts = sorted(points, key=lambda p: p["coords"][0])
    x = [p["coords"][0] for p in pts]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x + x[::-1],
            y=[p["hi"] for p in pts] + [p["lo"] for p in pts][::-1],
            fill="toself",
            fillcolor="rgba(0,114,178,0.18)",
            line={"width": 0},
            hoverinfo="skip",
            name="Wilson 95%",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[p["asr"] for p in pts],
            mode="lines+markers",
            line={"color": PALETTE[0]},
            text=[hover[tuple(p["key"])] for p in pts],
            hovertemplate="%{text}<extra></extra>",
            name="ASR",
            meta="points",  # the report's click handler answers clicks on these traces
        )
    )
    if tau is not None:
        fig.add_hline(
            y=tau, line_dash="dash", line_color=TAU_COLOUR, annotation_text=f"τ = {tau:.2f}"
        )
    fig.update_xaxes(title_text=axis_label(config, 0))
    fig.update_yaxes(title_text=f"attack success rate ({judge} judge)", range=[-0.02, 1.02])
    fig.update_layout(title=f"ASR along the direction ({hint})")
    return fig


def _edge_and_origin(fig, xs, ys, z, asr: np.ndarray, tau) -> None:
    """The basin edge (when the plane crosses τ) and the origin, on the heat map."""
    import plotly.graph_objects as go

    if tau is not None and np.nanmin(asr) <= tau < np.nanmax(asr):
        fig.add_trace(
            go.Contour(
                x=xs, y=ys, z=z,
                contours={"start": tau, "end": tau, "size": 1, "coloring": "none"},
                line={"color": TAU_COLOUR, "width": 3},
                showscale=False, hoverinfo="skip", name=f"ASR = τ = {tau:.2f}", showlegend=True,
            ),
            row=1, col=2,
        )  # fmt: skip
    star = {"symbol": "star", "size": 14, "color": "white", "line": {"color": "black", "width": 1}}
    fig.add_trace(
        go.Scatter(
            x=[0], y=[0], mode="markers", marker=star, name="origin (aligned model)",
            hoverinfo="skip",
        ),
        row=1, col=2,
    )  # fmt: skip


def _plane(name: str, config: dict, points: list[dict], hover: dict, judge: str, tau, hint: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    xs, ys, f = plane_arrays(points)
    text = np.full(f["asr"].shape, "", dtype=object)
    for p in points:
        text[ys.index(float(p["coords"][1])), xs.index(float(p["coords"][0]))] = hover[
            tuple(p["key"])
        ]
    z = np.where(np.isnan(f["asr"]), None, f["asr"]).tolist()
    edge = f" (basin edge: τ = {tau:.2f})" if tau is not None else ""
    fig = make_subplots(
        rows=1,
        cols=2,
        specs=[[{"type": "surface"}, {"type": "xy"}]],
        subplot_titles=("ASR surface", "ASR heat map" + edge),
        horizontal_spacing=0.08,
    )
    hovertemplate = "%{text}<extra></extra>"
    fig.add_trace(
        go.Surface(
            x=xs, y=ys, z=z, cmin=0, cmax=1, colorscale="Viridis", text=text,
            hovertemplate=hovertemplate, showscale=False, meta="points",
        ),
        row=1, col=1,
    )  # fmt: skip
    fig.add_trace(
        go.Heatmap(
            x=xs, y=ys, z=z, hovertemplate=hovertemplate,
            colorbar={"title": {"text": "ASR"}, "len": 0.9},
            colorscale="Viridis", zmin=0, zmax=1, text=text, meta="points",
        ),
        row=1, col=2,
    )  # fmt: skip
    _edge_and_origin(fig, xs, ys, z, f["asr"], tau)
    fig.update_xaxes(title_text=axis_label(config, 0), row=1, col=2)
    fig.update_yaxes(title_text=axis_label(config, 1), row=1, col=2)
    fig.update_scenes(
        xaxis_title=f"α: {config['dirs'][0]} ({config['norm']})",
        yaxis_title=f"β: {config['dirs'][1]} ({config['norm']}, ⊥)",
        zaxis_title="ASR",
        zaxis_range=[0, 1],
    )
    fig.update_layout(
        title=f"Safety landscape of {_html.escape(name)} ({_html.escape(judge)} judge; {hint})",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def draw_html(run: str | Path, answers_on_hover: int = 2, name: str | None = None):
    """The plotly figure of `plot_html`: for a 2-D run the 3-D ASR surface beside the heat map
    (with the basin edge at τ), for a 1-D run the curve with its band. Its size is left to
    the page (autosize). Hover shows `answers_on_hover` answers of the point (0: a hint to
    click instead); the traces of the points carry `meta="points"`. `name` (default: the
    folder's) is the run's name in the title."""
    run = Path(run)
    config, points, summary = load_run(run)
    need_points(run, points)
    gens = load_generations(run)
    judge = judge_name(config, summary)
    tau = summary.get("tau")
    hover = {
        tuple(p["key"]): _hover(config, p, gens.get(tuple(p["key"]), []), judge, answers_on_hover)
        for p in points
    }
    two_d = len(config["dirs"]) == 2
    hint = "hover for answers" if answers_on_hover else "click a point for its answers"
    if two_d:
        fig = _plane(name or stem(run), config, points, hover, judge, tau, hint)
    else:
        fig = _curve(config, points, hover, judge, tau, hint)
    fig.update_layout(
        font=FONT,
        template="plotly_white",
        hoverlabel={"align": "left"},
        autosize=True,
        margin={"l": 60, "r": 30, "t": 70, "b": 60},
    )
    return fig


def figure_div(fig, div_id: str = "landscape") -> str:
    """The figure as a `<div>` filling its container, with plotly's script; a fixed id, so the
    same run always gives the same bytes."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_width="100%",
        default_height="100%",
        config={"responsive": True, "displaylogo": False},
    )


_CSS = (
    "html, body {margin: 0; height: 100%;} .figure {width: 100%; height: 100vh; min-height: 520px;}"
)


def plot_html(run: str | Path, out: str | Path, plotlyjs: str = "beside") -> Path:
    """Interactive `<name>.html`: for a 2-D run the 3-D ASR surface beside the heat map, for a
    1-D run the curve with its band. Hovering a point shows its coordinates, ASR, Wilson
    interval and two stored answers (truncated, HTML-escaped). The figure fills the window.

    plotly.js (plotly's own bundled copy) is written once as `plotly.min.js` in `out` by
    default (`beside`), so the folder opens offline; `inline` puts it into the page (one
    self-contained ~5 MB file), `cdn` loads it from plotly's CDN (needs the network)."""
    run, out = Path(run), prepare_out(out)
    fig = draw_html(run)
    out.mkdir(parents=True, exist_ok=True)
    place_plotlyjs(plotlyjs, out)
    path = out / f"{stem(run)}.html"
    body = f'<div class="figure">{figure_div(fig)}</div>'
    with replacing(path) as tmp:
        tmp.write_text(page(f"Safety landscape of {stem(run)}", body, plotlyjs, _CSS), "utf-8")
    return path
