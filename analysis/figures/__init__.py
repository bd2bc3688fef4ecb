"""Figures made from run folders alone (never from live models).

Each figure has a `draw_*` function that returns the figure object (a matplotlib `Figure`,
or for the interactive page a plotly figure), to show in a notebook or to inspect, and a
`plot_*` function that draws it and writes its files. Nothing here goes through pyplot or
changes the process's matplotlib backend: the style is applied with `rc_context` and
restored after.

- `curves`: `draw_curves`/`plot_curves`, ASR curves with Wilson bands on one axis;
  `draw_outcomes`/`plot_outcomes`, the answers' outcome shares stacked with the utility;
- `plane`: `draw_contour`/`plot_contour`, `draw_surface`/`plot_surface`,
  `draw_panels`/`plot_panels` (harmful, incoherent, utility; 2-D runs);
- `html`: `draw_html`/`plot_html`, the interactive plotly page with answers on hover;
- `sweeps`: `draw_lambda`/`plot_lambda`, `draw_lr`/`plot_lr`, AsFT sweeps;
- `run`: `draw_run`/`plot_run`, the `landscape.png` of a run folder;
- `style`: palette and rc settings; `data`: points shaped for drawing;
- `cli`: `main`, the command line `python -m analysis.figures`.
"""

from analysis.figures.cli import KINDS, main, parse_args, plan
from analysis.figures.curves import draw_curves, draw_outcomes, plot_curves, plot_outcomes
from analysis.figures.html import draw_html, plot_html
from analysis.figures.plane import (
    draw_contour,
    draw_panels,
    draw_surface,
    plot_contour,
    plot_panels,
    plot_surface,
)
from analysis.figures.run import draw_run, plot_run
from analysis.figures.style import CMAP, MARKERS, PALETTE, STYLE, TAU_COLOUR, styled
from analysis.figures.sweeps import draw_lambda, draw_lr, plot_lambda, plot_lr
from analysis.runs import load_asft_runs, load_generations, load_run

__all__ = [
    "CMAP",
    "KINDS",
    "MARKERS",
    "PALETTE",
    "STYLE",
    "TAU_COLOUR",
    "draw_contour",
    "draw_curves",
    "draw_html",
    "draw_lambda",
    "draw_lr",
    "draw_outcomes",
    "draw_panels",
    "draw_run",
    "draw_surface",
    "load_asft_runs",
    "load_generations",
    "load_run",
    "main",
    "parse_args",
    "plan",
    "plot_contour",
    "plot_curves",
    "plot_html",
    "plot_lambda",
    "plot_lr",
    "plot_outcomes",
    "plot_panels",
    "plot_run",
    "plot_surface",
    "styled",
]
