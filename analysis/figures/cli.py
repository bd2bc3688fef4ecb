"""Figures made from a run folder alone (never from live models).

    python -m analysis.figures RUN... [--out DIR] [--kind auto|curve|contour|surface|html|lambda|lr|frontier]
                               [--plotlyjs beside|inline|cdn]

RUN is a landscape run folder (written by `landscape.grid`) or, for `lambda`/`lr`, a folder of
AsFT runs (one subfolder per run, each holding config.json and result.json).

  curve    ASR against the coefficient with its Wilson 95% band; every 1-D run given is one
           curve, a 2-D run gives its two lines through the origin, all on one axis
  contour  2-D: filled ASR contours with the basin edge (ASR = τ) outlined       (PNG + PDF)
  surface  2-D: the ASR surface in 3-D                                           (PNG + PDF)
  outcomes the shares of refused / complied / incoherent answers stacked along each direction,
           with the ASR, τ and the utility on a second axis (runs with coherence or utility)
  panels   2-D: harmful, incoherent and utility heat maps with the safe-and-useful region
           outlined (runs with coherence or utility)                        (PNG + PDF)
  html     interactive plotly page: the surface and heat map (a 1-D run: the curve); hovering
           shows the coordinates, ASR, its Wilson interval and two answers from that point.
           It draws offline: --plotlyjs beside (default) writes plotly.min.js once into
           --out beside the pages, inline puts it into each page, cdn loads it from the net
  lambda   AsFT λ sweep: harmful score and fine-tuning accuracy against λ         (PNG + PDF)
  lr       AsFT learning-rate robustness: HS and FA against lr, one line per method
  frontier a sweep folder (`landscape.asft sweep`): HS against FA, one line per method and
           control through its λ values, mean over seeds with Wilson and seed-spread bars
  auto     (default) curve for 1-D runs (all on one axis); contour, surface and html for each
           2-D run; outcomes for each run, and panels for each 2-D run, whose points carry
           coherence outcomes or utility; frontier for a sweep folder; lambda or lr for a
           folder of AsFT runs, by which setting varies

Files are named after the folder they come from (`grid-aligned-harm-contour.png`, ...) and
written to --out (default: the current directory). Bad input stops with one `error:` line and
exit status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from analysis.figures.curves import draw_outcomes, has_answers_split, plot_curves, plot_outcomes
from analysis.figures.data import load_lines, load_plane, need_points
from analysis.figures.frontier import frontier_records, plot_frontier
from analysis.figures.html import plot_html
from analysis.figures.plane import draw_panels, plot_contour, plot_panels, plot_surface
from analysis.figures.plotlyjs import MODES
from analysis.figures.style import prepare_out
from analysis.figures.sweeps import lambda_records, lr_records, plot_lambda, plot_lr
from analysis.runs import is_asft_dir, load_asft_runs, load_run
from landscape.cli import Parser, run_cli
from landscape.errors import LandscapeError

KINDS = (
    "auto", "curve", "outcomes", "contour", "surface", "panels", "html", "lambda", "lr", "frontier",
)  # fmt: skip
PLANE = {"contour": plot_contour, "surface": plot_surface, "panels": plot_panels, "html": plot_html}
SWEEPS = {
    "lambda": (lambda_records, plot_lambda),
    "lr": (lr_records, plot_lr),
    "frontier": (frontier_records, plot_frontier),
}


def _sweep(p: Path) -> tuple:
    """The sweep figure of a folder of AsFT runs, by which setting varies."""
    records = load_asft_runs(p)
    n_lam = len(
        {json.dumps(r.get("lam")) for r in records if str(r.get("method", "")).startswith("asft")}
    )
    if n_lam > 1:
        lambda_records(p)
        return (plot_lambda, p)
    if len({json.dumps(r.get("lr")) for r in records}) > 1:
        lr_records(p)
        return (plot_lr, p)
    raise LandscapeError(f"{p}: neither λ nor lr varies across its AsFT runs (nothing to sweep)")


def _auto(paths: list[Path]) -> list[tuple]:
    plan, curves = [], []
    for p in paths:
        if (p / "sweep.csv").is_file():
            frontier_records(p)
            plan.append((plot_frontier, p))
            continue
        if not (p / "config.json").is_file() and is_asft_dir(p):
            plan.append(_sweep(p))
            continue
        config, points, _ = load_run(p)
        need_points(p, points)
        split = has_answers_split(points)
        if len(config["dirs"]) == 1:
            curves.append(p)
        else:
            load_plane(p, "contour plot")
            plan += [(plot_contour, p), (plot_surface, p), (plot_html, p)]
            plan += [(plot_panels, p)] if split else []
        if split and load_lines(p):
            plan.append((plot_outcomes, p))
    if curves:
        plan.insert(0, (plot_curves, curves))
    return plan


def plan(paths: list[Path], kind: str) -> list[tuple]:
    """Check every input and return the figure calls to make, (function, argument): nothing is
    written before all inputs have been read and found usable."""
    if kind in SWEEPS:
        check, fn = SWEEPS[kind]
        for p in paths:
            check(p)
        return [(fn, p) for p in paths]
    if kind == "curve":
        for p in paths:
            load_lines(p)
        return [(plot_curves, paths)]
    if kind == "outcomes":
        for p in paths:
            draw_outcomes(p)  # checks what it needs; drawing a figure writes nothing
        return [(plot_outcomes, p) for p in paths]
    if kind in PLANE:
        for p in paths:
            if kind == "html":
                _, points, _ = load_run(p)
                need_points(p, points)
            elif kind == "panels":
                draw_panels(p)
            else:
                load_plane(p, f"{kind} plot")
        return [(PLANE[kind], p) for p in paths]
    return _auto(paths)


def _make(paths: list[Path], kind: str, out: Path, plotlyjs: str = "beside") -> list[Path]:
    prepare_out(out)
    written: list[Path] = []
    for fn, arg in plan(paths, kind):
        if fn is plot_html:
            fn = functools.partial(plot_html, plotlyjs=plotlyjs)
        r = fn(arg, out)
        written += r if isinstance(r, list) else [r]
    return written


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m analysis.figures",
        description=__doc__.split("\n\n", 2)[-1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run folder(s) or AsFT sweep folder(s)"
    )
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument("--kind", default="auto", choices=KINDS)
    p.add_argument(
        "--plotlyjs",
        default="beside",
        choices=MODES,
        help="how the HTML pages get plotly.js: beside (default; plotly.min.js written once "
        "into --out), inline (in each page), cdn (from the network)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    written = run_cli(lambda: _make(a.runs, a.kind, a.out, a.plotlyjs))
    if written is None:
        return 2
    for w in written:
        print(w)
    return 0
