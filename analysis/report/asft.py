"""What an AsFT folder's report shows: a comparison's HS/FA table (paper Table 2) with its
diagnostics and table.md, a sweep's HS–FA frontier and its runs."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from analysis.figures.frontier import BEFORE, frontier_points, frontier_records
from analysis.figures.style import PALETTE
from analysis.report.grid import display_name
from analysis.runs import is_comparison
from analysis.tables.build import FLOAT_FORMATS
from analysis.tables.hsfa import hsfa_table
from analysis.tables.render import table_cells
from landscape.errors import LandscapeError
from landscape.io import read_json, read_text


def is_sweep(folder: Path) -> bool:
    return (folder / "sweep.csv").is_file()


def is_asft(folder: Path) -> bool:
    """A folder an AsFT report is made of: a comparison or a sweep."""
    return is_comparison(folder) or is_sweep(folder)


def _table(tid: str, title: str, df: pd.DataFrame, fmt: str) -> dict:
    columns, rows = table_cells(df, fmt)
    return {"id": tid, "title": title, "columns": columns, "rows": rows}


def _diagnostics(folder: Path) -> list[dict]:
    """diagnostics.json as table.md shows it: how the harmful update sits against each
    penalty variant (and a random direction's share, for scale)."""
    path = folder / "diagnostics.json"
    if not path.is_file():
        return []
    d = read_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("variants"), dict):
        raise LandscapeError(f"{path} does not hold the comparison's diagnostics")
    rows = []
    for variant, s in d["variants"].items():
        h, r = s.get("harm") or {}, s.get("random") or {}
        rows.append(
            [variant]
            + [_fmt(h.get("allowed_share"), ".4f"), _fmt(r.get("allowed_share"), ".4f")]
            + [_fmt(h.get("along_share"), "+.4f"), _fmt(h.get("against_share"), ".4f")]
        )
    cosines = (
        f"cos(d_aligned, d_harm) = {_fmt(d.get('cos_aligned_harm'), '+.4f')}; "
        f"a random direction: {_fmt(d.get('cos_aligned_random'), '+.4f')}"
    )
    columns = ["variant", "harmful update: share allowed", "random: share allowed",
               "harmful: signed ⟨d̂, Δ⟩/‖Δ‖", "harmful: share against d"]  # fmt: skip
    return [
        {"id": "diagnostics", "title": "Diagnostics (diagnostics.json)", "note": cosines,
         "columns": columns, "rows": rows},
    ]  # fmt: skip


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(float(v), spec)


def comparison_report(folder: Path) -> dict:
    """The report's data for an AsFT comparison folder."""
    hsfa = hsfa_table(folder)
    tables = [_table("hsfa", "HS and FA (%), paper Table 2 layout", hsfa, FLOAT_FORMATS["hsfa"])]
    tables += _diagnostics(folder)
    results = pd.read_csv(folder / "results.csv")
    tables.append(_table("results", "Every run (results.csv)", results, "{:.4g}"))
    texts = []
    if (folder / "table.md").is_file():
        texts.append({"title": "table.md, as the comparison wrote it",
                      "text": read_text(folder / "table.md")})  # fmt: skip
    name = display_name(folder)
    methods = sorted({str(m) for m in results["method"]})
    return {
        "kind": "comparison",
        "title": f"AsFT comparison: {name}",
        "subtitle": f"{len(results)} runs: {', '.join(methods)}",
        "tables": tables,
        "texts": texts,
    }


def _frontier_figure(df: pd.DataFrame) -> dict:
    """The HS–FA frontier as a plotly figure: per method the mean over seeds through its λ
    values, with the pooled Wilson 95% bars (the matplotlib figure is analysis.figures')."""
    data, i = [], 0
    for method, pts in frontier_points(df).items():
        before = method == BEFORE
        colour = "black" if before else PALETTE[i % len(PALETTE)]
        i += 0 if before else 1
        lams = ["–" if lam is None or math.isnan(lam) else f"{lam:g}" for lam in pts["lam"]]
        data.append(
            {
                "type": "scatter",
                "mode": "markers" if before else "lines+markers",
                "name": method,
                "x": pts["fa"].tolist(),
                "y": pts["hs"].tolist(),
                "error_x": {"type": "data", "symmetric": False,
                            "array": (pts["fa_hi"] - pts["fa"]).tolist(),
                            "arrayminus": (pts["fa"] - pts["fa_lo"]).tolist()},
                "error_y": {"type": "data", "symmetric": False,
                            "array": (pts["hs_hi"] - pts["hs"]).tolist(),
                            "arrayminus": (pts["hs"] - pts["hs_lo"]).tolist()},
                "marker": {"color": colour, "size": 14 if before else 8,
                           "symbol": "star" if before else "circle"},
                "line": {"color": colour},
                "text": [f"λ = {lam}, {n} seed(s)" for lam, n in zip(lams, pts["n_seeds"])],
                "hovertemplate": "%{text}<br>FA %{x:.1f}%, HS %{y:.1f}%<extra>%{fullData.name}</extra>",
            }
        )  # fmt: skip
    p = df["p"].iloc[0] if "p" in df.columns else "?"
    layout = {
        "title": {"text": f"HS–FA frontier (p = {p}; bars: Wilson 95% over the pooled answers)"},
        "xaxis": {"title": {"text": "fine-tuning accuracy FA (%) →"}},
        "yaxis": {"title": {"text": "harmful score HS (%) ↓"}, "range": [-3, 103]},
        "template": "plotly_white",
        "autosize": True,
        "margin": {"l": 60, "r": 30, "t": 60, "b": 60},
        "font": {"family": "Arial, Helvetica, sans-serif", "size": 14},
    }
    return {"data": data, "layout": layout}


def sweep_report(folder: Path) -> dict:
    """The report's data for an AsFT sweep folder (sweep.csv)."""
    df = frontier_records(folder)
    shown = [c for c in ("method", "p", "lam", "lam_released", "seed", "hs", "n_hs", "fa", "n_fa")
             if c in df.columns]  # fmt: skip
    name = display_name(folder)
    return {
        "kind": "sweep",
        "title": f"AsFT sweep: {name}",
        "subtitle": f"{len(df)} rows of sweep.csv, {df['method'].nunique()} methods",
        "tables": [_table("sweep", "Every run (sweep.csv)", df[shown], "{:.4g}")],
        "figure": _frontier_figure(df),
        "figure_height": 560,
        "texts": [],
    }


def asft_report(folder: str | Path) -> dict:
    folder = Path(folder)
    if is_sweep(folder):
        return sweep_report(folder)
    return comparison_report(folder)
