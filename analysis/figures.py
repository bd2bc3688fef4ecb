"""Figures made from a run folder alone (never from live models).

    python -m analysis.figures RUN... [--out DIR] [--kind auto|curve|contour|surface|html|lambda|lr]

RUN is a landscape run folder (written by `landscape.grid`) or, for `lambda`/`lr`, a folder of
AsFT runs (one subfolder per run, each holding config.json and result.json).

  curve    ASR against the coefficient with its Wilson 95% band; every 1-D run given is one
           curve, a 2-D run gives its two lines through the origin, all on one axis
  contour  2-D: filled ASR contours with the basin edge (ASR = τ) outlined       (PNG + PDF)
  surface  2-D: the ASR surface in 3-D                                           (PNG + PDF)
  html     interactive plotly page: the surface and heat map (a 1-D run: the curve); hovering
           shows the coordinates, ASR, its Wilson interval and two answers from that point
  lambda   AsFT λ sweep: harmful score and fine-tuning accuracy against λ         (PNG + PDF)
  lr       AsFT learning-rate robustness: HS and FA against lr, one line per method
  auto     (default) curve for 1-D runs (all on one axis); contour, surface and html for each
           2-D run; lambda or lr for a folder of AsFT runs, by which setting varies

Files are named after the folder they come from (`grid-aligned-harm-contour.png`, ...) and
written to --out (default: the current directory). Bad input stops with one `error:` line and
exit status 2 before anything is written.
"""

from __future__ import annotations

import html as _html
import json
import math
import sys
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from landscape.errors import LandscapeError  # noqa: E402
from landscape.store import read_jsonl  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
TAU_COLOUR = PALETTE[1]  # vermillion: the basin edge / τ everywhere
CMAP = "viridis"  # perceptually uniform, colour-blind safe, prints in grey
Z95 = 1.959963984540054

STYLE = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType: text stays text in the PDF (journals ask for it)
    "ps.fonttype": 42,
}

KINDS = ("auto", "curve", "contour", "surface", "html", "lambda", "lr")


@contextmanager
def _style():
    with plt.rc_context(STYLE):
        yield


# --- reading ------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LandscapeError(f"cannot read {path}: {e}") from e


def _read_jsonl(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except (OSError, UnicodeDecodeError) as e:
        raise LandscapeError(f"cannot read {path}: {e}") from None


def load_run(run: str | Path) -> tuple[dict, list[dict], dict]:
    """(config, points, summary) of a landscape run folder; LandscapeError if it is not one.

    `points` may be empty (a run that has not finished a point yet); `summary` is {} until the
    run has finished."""
    run = Path(run)
    if not run.is_dir():
        raise LandscapeError(f"{run}: no such run folder")
    if not (run / "config.json").is_file():
        raise LandscapeError(f"{run}: not a run folder (no config.json)")
    config = _read_json(run / "config.json")
    dirs = config.get("dirs") if isinstance(config, dict) else None
    if not isinstance(dirs, list) or len(dirs) not in (1, 2) or "norm" not in config:
        raise LandscapeError(f"{run}: not a landscape run folder (config.json has no dirs/norm)")
    points = [p for p in _read_jsonl(run / "points.jsonl") if "coords" in p and "asr" in p]
    summary_path = run / "summary.json"
    summary = _read_json(summary_path) if summary_path.exists() else {}
    return config, points, summary


def load_generations(run: str | Path) -> dict[tuple[int, ...], list[dict]]:
    """generations.jsonl grouped by grid key, in file order ({} if the file is missing)."""
    out: dict[tuple[int, ...], list[dict]] = {}
    for g in _read_jsonl(Path(run) / "generations.jsonl"):
        out.setdefault(tuple(g.get("key", ())), []).append(g)
    return out


def _need_points(run: Path, points: list[dict]) -> None:
    if not points:
        raise LandscapeError(f"{run}: the run has no finished points yet")


def _need_2d(run: Path, config: dict, what: str) -> None:
    if len(config["dirs"]) != 2:
        raise LandscapeError(
            f"{run}: a {what} needs a 2-D run (two directions); this run is 1-D "
            f"along {config['dirs'][0]} (use --kind curve)"
        )


def _judge(config: dict, summary: dict) -> str:
    return summary.get("judge") or str(config.get("judge", "judge")).split(",")[0]


def _axis_label(config: dict, i: int) -> str:
    return (
        f"α along {config['dirs'][i]} ({config['norm']} norm)"
        if i == 0
        else f"β along {config['dirs'][i]} ({config['norm']} norm, ⊥ first)"
    )


def _grid(points: list[dict]) -> tuple[list[float], list[float], dict[str, np.ndarray]]:
    """The 2-D points as arrays indexed [β, α] (rows: y) for asr/lo/hi/n/n_unsafe; NaN = missing."""
    xs = sorted({float(p["coords"][0]) for p in points})
    ys = sorted({float(p["coords"][1]) for p in points})
    fields = {f: np.full((len(ys), len(xs)), np.nan) for f in ("asr", "lo", "hi", "n", "n_unsafe")}
    xi = {x: i for i, x in enumerate(xs)}
    yi = {y: i for i, y in enumerate(ys)}
    for p in points:
        r, c = yi[float(p["coords"][1])], xi[float(p["coords"][0])]
        for f, arr in fields.items():
            if p.get(f) is not None:
                arr[r, c] = p[f]
    return xs, ys, fields


def _load_2d(run: str | Path, what: str):
    run = Path(run)
    config, points, summary = load_run(run)
    _need_2d(run, config, what)
    _need_points(run, points)
    xs, ys, f = _grid(points)
    if len(xs) < 2 or len(ys) < 2:
        raise LandscapeError(
            f"{run}: a {what} needs finished points at two or more values of each coefficient"
        )
    return run, config, points, summary, xs, ys, f


# --- writing ------------------------------------------------------------------------------


def _prepare_out(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LandscapeError(f"--out {out}: exists and is not a folder")
    return out


def _save(fig, out: Path, stem: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt)
        paths.append(path)
    plt.close(fig)
    return paths


def _stem(run: Path) -> str:
    return run.resolve().name or "run"


# --- 1-D ----------------------------------------------------------------------------------


def _lines(run: Path, config: dict, points: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """(direction, norm, points sorted by coefficient) for a 1-D run, or the two lines through
    the origin of a 2-D run."""
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


def plot_curves(runs: str | Path | Iterable[str | Path], out: str | Path) -> list[Path]:
    """ASR against the coefficient with Wilson 95% bands, every run/direction on one axis (AsFT
    Fig. 1a style). 1-D runs give one curve each; 2-D runs their two lines through the origin.
    Writes `<name>-curve.{png,pdf}` for one run, `curves.{png,pdf}` for several."""
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not runs:
        raise LandscapeError("no run folders given")
    out = _prepare_out(out)
    series, norms, judges, taus = [], set(), set(), []
    for run in runs:
        config, points, summary = load_run(run)
        _need_points(run, points)
        lines = _lines(run, config, points)
        if not lines:
            raise LandscapeError(
                f"{run}: no line of two or more finished points through the origin"
            )
        for direction, norm, pts in lines:
            series.append((run, direction, pts))
            norms.add(norm)
        judges.add(_judge(config, summary))
        if summary.get("tau") is not None:
            taus.append(float(summary["tau"]))
    names = [d for _, d, _ in series]
    with _style():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (run, direction, pts) in enumerate(series):
            colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
            label = direction if names.count(direction) == 1 else f"{direction} ({_stem(run)})"
            x = [p["coords"][0] for p in pts]
            ax.fill_between(
                x, [p["lo"] for p in pts], [p["hi"] for p in pts], color=colour, alpha=0.18, lw=0
            )
            ax.plot(x, [p["asr"] for p in pts], marker=marker, color=colour, label=label)
        if len(set(taus)) == 1:
            ax.axhline(taus[0], color="0.35", ls="--", lw=1, label=f"τ = {taus[0]:.2f}")
        ax.axvline(0, color="0.6", lw=0.8, zorder=0)
        norm = "/".join(sorted(norms))
        ax.set_xlabel(f"coefficient α along each direction ({norm} norm)")
        ax.set_ylabel(f"attack success rate ({'/'.join(sorted(judges))} judge)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("ASR along each direction (bands: Wilson 95%)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        stem = f"{_stem(runs[0])}-curve" if len(runs) == 1 else "curves"
        return _save(fig, out, stem)


# --- 2-D: matplotlib ----------------------------------------------------------------------


def _tau_text(tau: float | None, z: np.ndarray) -> str:
    if tau is None:
        return "no τ (origin not evaluated)"
    if np.nanmin(z) > tau:
        return f"τ = {tau:.2f}: no point is inside the basin"
    if np.nanmax(z) <= tau:
        return f"τ = {tau:.2f}: the whole plane is inside the basin"
    return f"basin edge: ASR = τ = {tau:.2f}"


def plot_contour(run: str | Path, out: str | Path) -> list[Path]:
    """Filled ASR contours over the plane with the safety-basin edge (ASR = τ) outlined;
    `<name>-contour.{png,pdf}`."""
    run, config, points, summary, xs, ys, f = _load_2d(run, "contour plot")
    out = _prepare_out(out)
    z = np.ma.masked_invalid(f["asr"])
    tau = summary.get("tau")
    with _style():
        fig, ax = plt.subplots(figsize=(6.2, 4.8))
        ax.grid(False)
        ax.spines[["top", "right"]].set_visible(True)
        levels = np.linspace(0, 1, 11)
        filled = ax.contourf(xs, ys, z, levels=levels, cmap=CMAP, vmin=0, vmax=1, extend="neither")
        cb = fig.colorbar(filled, ax=ax, ticks=np.linspace(0, 1, 6))
        cb.set_label(f"attack success rate ({_judge(config, summary)} judge)")
        lines = ax.contour(
            xs, ys, z, levels=levels[1:-1], colors="white", linewidths=0.5, alpha=0.6
        )
        ax.clabel(lines, levels=levels[2:-1:2], fontsize=8, fmt="%.1f")
        handles = []
        if tau is not None and np.nanmin(z) <= tau < np.nanmax(z):
            ax.contour(xs, ys, z, levels=[tau], colors=TAU_COLOUR, linewidths=2.4)
            handles.append(Line2D([], [], color=TAU_COLOUR, lw=2.4, label=f"ASR = τ = {tau:.2f}"))
        gx, gy = np.meshgrid(xs, ys)
        ax.plot(gx[~z.mask], gy[~z.mask], ".", color="0.15", ms=2.5, alpha=0.6)
        (star,) = ax.plot(0, 0, "*", color="white", ms=14, mec="black", mew=0.8, ls="none")
        star.set_label("aligned model (origin)")
        handles.append(star)
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2,
            fontsize=9,
        )
        ax.set_xlabel(_axis_label(config, 0))
        ax.set_ylabel(_axis_label(config, 1))
        ax.set_title(f"Safety landscape — {_tau_text(tau, f['asr'])}")
        ax.set_aspect("auto")
        return _save(fig, out, f"{_stem(run)}-contour")


def plot_surface(run: str | Path, out: str | Path) -> list[Path]:
    """The ASR surface in 3-D, with the basin edge at τ drawn on the floor;
    `<name>-surface.{png,pdf}`."""
    run, config, points, summary, xs, ys, f = _load_2d(run, "surface plot")
    out = _prepare_out(out)
    z = f["asr"]
    tau = summary.get("tau")
    gx, gy = np.meshgrid(xs, ys)
    with _style():
        fig = plt.figure(figsize=(6.6, 5.2))
        ax = fig.add_subplot(projection="3d")
        surf = ax.plot_surface(
            gx,
            gy,
            np.ma.masked_invalid(z),
            cmap=CMAP,
            vmin=0,
            vmax=1,
            rstride=1,
            cstride=1,
            linewidth=0.3,
            edgecolor="0.3",
            antialiased=True,
            alpha=0.95,
        )
        floor = -0.25
        zm = np.ma.masked_invalid(z)
        ax.contourf(
            gx, gy, zm, zdir="z", offset=floor, levels=np.linspace(0, 1, 11), cmap=CMAP, alpha=0.6
        )
        if tau is not None and np.nanmin(z) <= tau < np.nanmax(z):
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
        cb.set_label(f"attack success rate ({_judge(config, summary)} judge)")
        title = "ASR surface"
        if tau is not None:
            title += f" (floor: contours, basin edge at τ = {tau:.2f}; ★ origin)"
        ax.set_title(title, fontsize=10)
        return _save(fig, out, f"{_stem(run)}-surface")


# --- interactive --------------------------------------------------------------------------


def _short(text: str, limit: int) -> str:
    """One line, at most `limit` characters, HTML-escaped (answers are model output)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return _html.escape(text, quote=True)


def _hover(config: dict, p: dict, gens: list[dict], judge: str) -> str:
    coords = "<br>".join(
        f"{'αβ'[i]} ({_html.escape(d)}) = {p['coords'][i]:+.4g}"
        for i, d in enumerate(config["dirs"])
    )
    lines = [
        coords,
        f"<b>ASR = {p['asr']:.3f}</b> ({p.get('n_unsafe', '?')}/{p.get('n', '?')}, {_html.escape(judge)})",
        f"Wilson 95%: [{p['lo']:.3f}, {p['hi']:.3f}]",
    ]
    for i, g in enumerate(gens[:2], 1):
        verdict = g.get("unsafe", {}).get(judge)
        tag = "" if verdict is None else (" [unsafe]" if verdict else " [safe]")
        lines.append(f"<i>Q{i}:</i> {_short(g.get('prompt', ''), 70)}")
        lines.append(f"<i>A{i}{tag}:</i> {_short(g.get('answer', ''), 110)}")
    if not gens:
        lines.append("<i>(no answers stored for this point)</i>")
    return "<br>".join(lines)


def plot_html(run: str | Path, out: str | Path, include_plotlyjs: str | bool = "cdn") -> Path:
    """Interactive `<name>.html`: for a 2-D run the 3-D ASR surface beside the heat map, for a
    1-D run the curve with its band. Hovering a point shows its coordinates, ASR, Wilson
    interval and two stored answers (truncated, HTML-escaped).

    plotly.js comes from the CDN by default (a ~20 kB file instead of ~4.5 MB; viewing it needs
    the network); pass include_plotlyjs=True for a self-contained file."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    run = Path(run)
    config, points, summary = load_run(run)
    _need_points(run, points)
    out = _prepare_out(out)
    gens = load_generations(run)
    judge = _judge(config, summary)
    tau = summary.get("tau")
    hover = {
        tuple(p["key"]): _hover(config, p, gens.get(tuple(p["key"]), []), judge) for p in points
    }
    font = {"family": "Arial, Helvetica, sans-serif", "size": 14}
    if len(config["dirs"]) == 1:
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
            )
        )
        if tau is not None:
            fig.add_hline(
                y=tau, line_dash="dash", line_color=TAU_COLOUR, annotation_text=f"τ = {tau:.2f}"
            )
        fig.update_xaxes(title_text=_axis_label(config, 0))
        fig.update_yaxes(title_text=f"attack success rate ({judge} judge)", range=[-0.02, 1.02])
        fig.update_layout(title="ASR along the direction (hover a point for its answers)")
    else:
        xs, ys, f = _grid(points)
        text = np.full(f["asr"].shape, "", dtype=object)
        for p in points:
            text[ys.index(float(p["coords"][1])), xs.index(float(p["coords"][0]))] = hover[
                tuple(p["key"])
            ]
        z = np.where(np.isnan(f["asr"]), None, f["asr"]).tolist()
        fig = make_subplots(
            rows=1,
            cols=2,
            specs=[[{"type": "surface"}, {"type": "xy"}]],
            subplot_titles=(
                "ASR surface",
                "ASR heat map" + (f" (basin edge: τ = {tau:.2f})" if tau is not None else ""),
            ),
            horizontal_spacing=0.08,
        )
        common = {"colorscale": "Viridis", "zmin": 0, "zmax": 1, "text": text}
        fig.add_trace(
            go.Surface(
                x=xs,
                y=ys,
                z=z,
                cmin=0,
                cmax=1,
                colorscale="Viridis",
                text=text,
                hovertemplate="%{text}<extra></extra>",
                showscale=False,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Heatmap(
                x=xs,
                y=ys,
                z=z,
                hovertemplate="%{text}<extra></extra>",
                colorbar={"title": {"text": "ASR"}, "len": 0.9},
                **common,
            ),
            row=1,
            col=2,
        )
        if tau is not None and np.nanmin(f["asr"]) <= tau < np.nanmax(f["asr"]):
            fig.add_trace(
                go.Contour(
                    x=xs,
                    y=ys,
                    z=z,
                    contours={"start": tau, "end": tau, "size": 1, "coloring": "none"},
                    line={"color": TAU_COLOUR, "width": 3},
                    showscale=False,
                    hoverinfo="skip",
                    name=f"ASR = τ = {tau:.2f}",
                    showlegend=True,
                ),
                row=1,
                col=2,
            )
        fig.add_trace(
            go.Scatter(
                x=[0],
                y=[0],
                mode="markers",
                marker={
                    "symbol": "star",
                    "size": 14,
                    "color": "white",
                    "line": {"color": "black", "width": 1},
                },
                name="origin (aligned model)",
                hoverinfo="skip",
            ),
            row=1,
            col=2,
        )
        fig.update_xaxes(title_text=_axis_label(config, 0), row=1, col=2)
        fig.update_yaxes(title_text=_axis_label(config, 1), row=1, col=2)
        fig.update_scenes(
            xaxis_title=f"α: {config['dirs'][0]} ({config['norm']})",
            yaxis_title=f"β: {config['dirs'][1]} ({config['norm']}, ⊥)",
            zaxis_title="ASR",
            zaxis_range=[0, 1],
        )
        fig.update_layout(
            title=f"Safety landscape of {_html.escape(_stem(run))} ({judge} judge; hover for answers)",
            legend={"orientation": "h", "y": -0.15},
        )
    fig.update_layout(
        font=font,
        template="plotly_white",
        hoverlabel={"align": "left"},
        width=1300 if len(config["dirs"]) == 2 else 900,
        height=600,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{_stem(run)}.html"
    fig.write_html(path, include_plotlyjs=include_plotlyjs, full_html=True)
    return path


# --- AsFT sweeps --------------------------------------------------------------------------


def _wilson(rate: float, n: int | None) -> tuple[float, float]:
    if not n:
        return rate, rate
    k = rate * n
    denom = 1 + Z95**2 / n
    centre = (k / n + Z95**2 / (2 * n)) / denom
    half = Z95 * math.sqrt(k / n * (1 - k / n) / n + Z95**2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def load_asft_runs(runs_dir: str | Path) -> list[dict]:
    """One record per AsFT run under `runs_dir` (subfolders with config.json + result.json):
    the config merged with the result, plus `name`. LandscapeError when there is none."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise LandscapeError(f"{runs_dir}: no such folder")
    records = []
    for sub in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if (sub / "config.json").is_file() and (sub / "result.json").is_file():
            cfg, res = _read_json(sub / "config.json"), _read_json(sub / "result.json")
            if "hs" in res and "fa" in res:
                records.append({**cfg, **res, "name": sub.name})
    if not records:
        raise LandscapeError(
            f"{runs_dir}: not a folder of AsFT runs (no subfolder holds config.json and a "
            "result.json with hs and fa)"
        )
    return records


_SYMBOL = {"lam": "λ", "lora_r": "r"}


def _series_name(r: dict, keys: Sequence[str]) -> str:
    method = r.get("method", "?")
    parts = [
        method + (f" ({r['variant']})" if method.startswith("asft") and r.get("variant") else "")
    ]
    keys = [k for k in keys if r.get(k) is not None]
    parts += [
        f"{_SYMBOL.get(k, k)} = {r[k]:g}"
        if isinstance(r[k], (int, float))
        else f"{_SYMBOL.get(k, k)} = {r[k]}"
        for k in keys
    ]
    return ", ".join(parts)


def _group(records: list[dict], x: str, ignore: set[str]) -> dict[str, list[dict]]:
    """Split records into series: same method/variant and same values of every other setting
    that varies (other than `x` and `ignore`)."""
    settings = ("task", "p", "lam", "lr", "epochs", "lora_r", "full", "seed")
    varying = [
        k
        for k in settings
        if k != x
        and k not in ignore
        and len({json.dumps(r.get(k)) for r in records if r.get(k) is not None}) > 1
    ]
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_series_name(r, varying), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: float(r[x]))
    return groups


def _sweep_figure(
    groups: dict[str, list[dict]], x: str, xlabel: str, title: str, xscale
) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.9), sharex=True)
    for i, (name, rs) in enumerate(groups.items()):
        colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
        xv = [float(r[x]) for r in rs]
        for ax, key, nkey in ((axes[0], "hs", "n_hs"), (axes[1], "fa", "n_fa")):
            y = np.array([100 * r[key] for r in rs])
            lohi = np.array([_wilson(r[key], r.get(nkey)) for r in rs]) * 100
            ax.errorbar(
                xv,
                y,
                yerr=[y - lohi[:, 0], lohi[:, 1] - y],
                marker=marker,
                color=colour,
                capsize=3,
                label=name,
            )
    for ax, lab in zip(axes, ("harmful score HS (%) ↓", "fine-tuning accuracy FA (%) ↑")):
        xscale(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(lab)
        ax.set_ylim(-3, 103)
    axes[0].set_title("(a) harmful score")
    axes[1].set_title("(b) fine-tuning accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(3, len(labels)), bbox_to_anchor=(0.5, -0.02)
    )
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(labels) - 1) // 3), 1, 1))
    return fig


def plot_lambda(runs_dir: str | Path, out: str | Path) -> list[Path]:
    """AsFT λ sweep (Fig. 4a/b): HS and FA against λ, symmetric-log x axis so that λ = 0 sits at
    the left end; error bars are Wilson 95% intervals over the evaluated prompts.
    `<name>-lambda.{png,pdf}`."""
    runs_dir = Path(runs_dir)
    records = load_asft_runs(runs_dir)
    out = _prepare_out(out)
    bad = [r["name"] for r in records if not isinstance(r.get("lam"), (int, float))]
    if bad:
        raise LandscapeError(f"{runs_dir}: runs without a numeric lam: {', '.join(bad)}")
    lams = sorted({float(r["lam"]) for r in records})
    positive = [v for v in lams if v > 0]

    def xscale(ax):
        if positive:
            # linear between 0 and the smallest positive λ, logarithmic above: 0 gets a place
            ax.set_xscale("symlog", linthresh=positive[0], linscale=0.6)
        ax.set_xticks(lams)
        ax.set_xticklabels([f"{v:g}" for v in lams])
        ax.minorticks_off()
        pad = 0.15 * positive[0] if positive else 0.5
        ax.set_xlim(lams[0] - pad, lams[-1] * 1.4 if positive else lams[-1] + pad)

    if lams[0] < 0:
        raise LandscapeError(f"{runs_dir}: λ must be ≥ 0, got {lams[0]:g}")
    groups = _group(
        records, "lam", ignore={"lr"} if len({r.get("method") for r in records}) > 1 else set()
    )
    task = records[0].get("task", "")
    with _style():
        fig = _sweep_figure(
            groups,
            "lam",
            "penalty weight λ (symmetric-log axis; 0 = no penalty)",
            f"AsFT λ sweep ({task}, p = {records[0].get('p', '?')}, lr = {records[0].get('lr', '?')})",
            xscale,
        )
        return _save(fig, out, f"{_stem(runs_dir)}-lambda")


def plot_lr(runs_dir: str | Path, out: str | Path) -> list[Path]:
    """Learning-rate robustness (Fig. 4c): HS and FA against lr (log axis), one line per method;
    error bars are Wilson 95% intervals. `<name>-lr.{png,pdf}`."""
    runs_dir = Path(runs_dir)
    records = load_asft_runs(runs_dir)
    out = _prepare_out(out)
    bad = [r["name"] for r in records if not isinstance(r.get("lr"), (int, float)) or r["lr"] <= 0]
    if bad:
        raise LandscapeError(f"{runs_dir}: runs without a positive lr: {', '.join(bad)}")
    lrs = sorted({float(r["lr"]) for r in records})
    # λ means nothing to methods without the penalty: do not split series on it there
    for r in records:
        if not str(r.get("method", "")).startswith("asft"):
            r["lam"] = None
    groups = _group(records, "lr", ignore=set())

    def xscale(ax):
        ax.set_xscale("log")
        ax.set_xticks(lrs)
        ax.set_xticklabels([f"{v:.0e}".replace("e-0", "e-") for v in lrs])
        ax.minorticks_off()
        if len(lrs) > 1:
            ax.set_xlim(lrs[0] / 1.5, lrs[-1] * 1.5)

    task = records[0].get("task", "")
    with _style():
        fig = _sweep_figure(
            groups,
            "lr",
            "learning rate (log axis)",
            f"Robustness to the learning rate ({task}, p = {records[0].get('p', '?')})",
            xscale,
        )
        return _save(fig, out, f"{_stem(runs_dir)}-lr")


# --- the landscape.png of every run -------------------------------------------------------


def plot_run(run: str | Path) -> Path:
    """`landscape.png` in the run folder: the 1-D ASR curve with its Wilson band, or the 2-D
    ASR heat map with contour lines and the basin edge at τ."""
    run = Path(run)
    config, points, summary = load_run(run)
    _need_points(run, points)
    tau = summary.get("tau")
    judge = _judge(config, summary)
    with _style():
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if len(config["dirs"]) == 1:
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
            ax.set_xlabel(_axis_label(config, 0))
            ax.set_ylabel("attack success rate")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(loc="best")
        else:
            ax.grid(False)
            ax.spines[["top", "right"]].set_visible(True)
            xs, ys, f = _grid(points)
            z = f["asr"]
            mesh = ax.pcolormesh(xs, ys, z, cmap=CMAP, vmin=0, vmax=1, shading="nearest")
            fig.colorbar(mesh, ax=ax, label=f"ASR ({judge})")
            if len(xs) > 1 and len(ys) > 1 and not np.isnan(z).all():
                zm = np.ma.masked_invalid(z)
                cs = ax.contour(
                    xs, ys, zm, levels=[0.2, 0.4, 0.6, 0.8], colors="white", linewidths=0.8
                )
                ax.clabel(cs, fontsize=8)
                if tau is not None and np.nanmin(z) <= tau < np.nanmax(z):
                    ax.contour(xs, ys, zm, levels=[tau], colors=TAU_COLOUR, linewidths=2)
            ax.plot(0, 0, "*", color="white", ms=12, mec="black")
            ax.set_xlabel(_axis_label(config, 0))
            ax.set_ylabel(_axis_label(config, 1))
        ax.set_title(
            "Safety landscape"
            + (
                f" (basin edge: ASR = τ = {tau:.2f})"
                if tau is not None and len(config["dirs"]) == 2
                else ""
            ),
        )
        fig.tight_layout()
        out = run / "landscape.png"
        fig.savefig(out, dpi=150, bbox_inches=None)
        plt.close(fig)
    return out


# --- command line -------------------------------------------------------------------------


def _is_asft_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (s / "result.json").is_file() and (s / "config.json").is_file()
        for s in path.iterdir()
        if s.is_dir()
    )


def _plan(paths: list[Path], kind: str) -> list[tuple]:
    """Check every input and return the figure calls to make: nothing is written before all
    inputs have been read and found usable."""
    if kind in ("lambda", "lr"):
        fn = plot_lambda if kind == "lambda" else plot_lr
        for p in paths:
            load_asft_runs(p)
        return [(fn, p) for p in paths]
    if kind == "curve":
        for p in paths:
            config, points, _ = load_run(p)
            _need_points(p, points)
            if not _lines(p, config, points):
                raise LandscapeError(
                    f"{p}: no line of two or more finished points through the origin"
                )
        return [(plot_curves, paths)]
    if kind in ("contour", "surface", "html"):
        fn = {"contour": plot_contour, "surface": plot_surface, "html": plot_html}[kind]
        for p in paths:
            if kind == "html":
                _, points, _ = load_run(p)
                _need_points(p, points)
            else:
                _load_2d(p, f"{kind} plot")
        return [(fn, p) for p in paths]
    # auto
    plan, curves = [], []
    for p in paths:
        if not (p / "config.json").is_file() and _is_asft_dir(p):
            records = load_asft_runs(p)
            n_lam = len(
                {
                    json.dumps(r.get("lam"))
                    for r in records
                    if str(r.get("method", "")).startswith("asft")
                }
            )
            n_lr = len({json.dumps(r.get("lr")) for r in records})
            if n_lam > 1:
                plan.append((plot_lambda, p))
            elif n_lr > 1:
                plan.append((plot_lr, p))
            else:
                raise LandscapeError(
                    f"{p}: neither λ nor lr varies across its AsFT runs (nothing to sweep)"
                )
            continue
        config, points, _ = load_run(p)
        _need_points(p, points)
        if len(config["dirs"]) == 1:
            curves.append(p)
        else:
            _load_2d(p, "contour plot")
            plan += [(plot_contour, p), (plot_surface, p), (plot_html, p)]
    if curves:
        plan.insert(0, (plot_curves, curves))
    return plan


def main(argv: list[str] | None = None) -> int:
    from landscape.cli import Parser

    p = Parser(
        prog="python -m analysis.figures",
        description=__doc__.split("\n\n", 2)[-1] if __doc__ else None,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run folder(s) or AsFT sweep folder(s)"
    )
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument("--kind", default="auto", choices=KINDS)
    a = p.parse_args(argv)
    try:
        _prepare_out(a.out)
        plan = _plan(a.runs, a.kind)
        written: list[Path] = []
        for fn, arg in plan:
            r = fn(arg, a.out)
            written += r if isinstance(r, list) else [r]
    except LandscapeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
