"""The figures' look and their files: palette, rc settings, output folder, atomic saving.

Figures are drawn on `matplotlib.figure.Figure` objects, never through pyplot, and the
style is applied with `matplotlib.rc_context`, which restores the settings after: drawing
a figure leaves the process's backend and rcParams as they were (a notebook keeps its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from landscape.errors import LandscapeError
from landscape.io import check_writable, replacing

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
# No star: it marks the reference point (the aligned model, the origin) in every figure.
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "h"]
TAU_COLOUR = PALETTE[1]  # vermillion: the basin edge / τ everywhere


def look(i: int) -> tuple[str, str]:
    """The colour and marker of a figure's i-th series. Past the palette's length the markers
    shift by one, so that no two of the first 64 series share both."""
    return PALETTE[i % len(PALETTE)], MARKERS[(i + i // len(PALETTE)) % len(MARKERS)]


def looks(groups: Sequence[str], members: Sequence[str]) -> list[tuple[str, str]]:
    """Colour and marker per series, the series being (group, member) pairs: the colour names
    the group (a direction) and the marker the member (a run), so that one direction across
    runs reads as one colour. Where the groups or the members outnumber the palette or the
    markers, `look` in order."""
    gs, ms = list(dict.fromkeys(groups)), list(dict.fromkeys(members))
    if len(gs) > len(PALETTE) or len(ms) > len(MARKERS):
        return [look(i) for i in range(len(groups))]
    return [(PALETTE[gs.index(g)], MARKERS[ms.index(m)]) for g, m in zip(groups, members)]


CMAP = "viridis"  # perceptually uniform, colour-blind safe, prints in grey

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


def styled():
    """The figures' rc settings for the length of a `with` block (restored after)."""
    return matplotlib.rc_context(STYLE)


def prepare_out(out: str | Path) -> Path:
    """The output folder as a Path; LandscapeError when it exists and is not a folder, or
    cannot be made or written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LandscapeError(f"--out {out}: exists and is not a folder")
    return check_writable(out)


def save_figure(fig: Figure, path: Path, **savefig_kw) -> Path:
    """`fig` written to `path` through a temporary file (readers never see half a PNG), in the
    format the suffix names, with the style's save settings (dpi, tight box, fonts)."""
    fmt = path.suffix.lstrip(".")
    if fmt == "pdf":  # no creation date: a figure drawn again from the same runs is the same file
        savefig_kw = {"metadata": {"CreationDate": None}, **savefig_kw}
    with styled(), replacing(path) as tmp:
        fig.savefig(tmp, format=fmt, **savefig_kw)
    return path


def save(fig: Figure, out: Path, stem: str, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """`out/stem.png`, `out/stem.pdf` (or `formats`)."""
    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, out / f"{stem}.{fmt}") for fmt in formats]


def stem(run: Path) -> str:
    """A figure file's name: the folder it comes from."""
    return run.resolve().name or "run"


def judge_name(config: dict, summary: dict) -> str:
    """The judge whose ASR the points' `asr` is."""
    return summary.get("judge") or str(config.get("judge", "judge")).split(",")[0]


def axis_label(config: dict, i: int) -> str:
    """The label of coefficient axis `i` (α: the first direction, β: the second, ⊥ the first)."""
    return (
        f"α along {config['dirs'][i]} ({config['norm']} norm)"
        if i == 0
        else f"β along {config['dirs'][i]} ({config['norm']} norm, ⊥ first)"
    )
