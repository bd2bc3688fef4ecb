"""ASR against the coefficient with Wilson 95% bands, every run and direction on one axis."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from analysis.figures.data import load_lines
from analysis.figures.style import MARKERS, PALETTE, judge_name, prepare_out, save, stem, styled
from landscape.errors import LandscapeError


def _runs(runs) -> list[Path]:
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not runs:
        raise LandscapeError("no run folders given")
    return runs


def draw_curves(runs: str | Path | Iterable[str | Path]) -> Figure:
    """The figure of `plot_curves`: one line with its band per run and direction (a 2-D run
    gives its two lines through the origin), a dashed τ line when every run has the same τ."""
    runs = _runs(runs)
    series, norms, judges, taus = [], set(), set(), []
    for run in runs:
        config, summary, lines = load_lines(run)
        series += [(run, direction, pts) for direction, _, pts in lines]
        norms |= {norm for _, norm, _ in lines}
        judges.add(judge_name(config, summary))
        if summary.get("tau") is not None:
            taus.append(float(summary["tau"]))
    names = [d for _, d, _ in series]
    with styled():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        for i, (run, direction, pts) in enumerate(series):
            colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
            label = direction if names.count(direction) == 1 else f"{direction} ({stem(run)})"
            x = [p["coords"][0] for p in pts]
            ax.fill_between(
                x, [p["lo"] for p in pts], [p["hi"] for p in pts], color=colour, alpha=0.18, lw=0
            )
            ax.plot(x, [p["asr"] for p in pts], marker=marker, color=colour, label=label)
        if len(set(taus)) == 1:
            ax.axhline(taus[0], color="0.35", ls="--", lw=1, label=f"τ = {taus[0]:.2f}")
        ax.axvline(0, color="0.6", lw=0.8, zorder=0)
        ax.set_xlabel(f"coefficient α along each direction ({'/'.join(sorted(norms))} norm)")
        ax.set_ylabel(f"attack success rate ({'/'.join(sorted(judges))} judge)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title("ASR along each direction (bands: Wilson 95%)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def plot_curves(runs: str | Path | Iterable[str | Path], out: str | Path) -> list[Path]:
    """ASR against the coefficient with Wilson 95% bands, every run/direction on one axis (AsFT
    Fig. 1a style). 1-D runs give one curve each; 2-D runs their two lines through the origin.
    Writes `<name>-curve.{png,pdf}` for one run, `curves.{png,pdf}` for several."""
    runs, out = _runs(runs), prepare_out(out)
    name = f"{stem(runs[0])}-curve" if len(runs) == 1 else "curves"
    return save(draw_curves(runs), out, name)
