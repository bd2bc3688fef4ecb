"""ASR against the coefficient with Wilson 95% bands, every run and direction on one axis;
and a run's answers along each direction as stacked shares of refused, complied and
incoherent answers, with the utility on a second axis."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from matplotlib.figure import Figure

from analysis.figures.data import load_lines
from analysis.figures.style import (
    PALETTE,
    TAU_COLOUR,
    judge_name,
    look,
    looks,
    prepare_out,
    save,
    stem,
    styled,
)
from landscape.errors import LandscapeError
from landscape.utility import utility_measure, utility_score

# Stacked from the bottom: complied (vermillion, the harm colour everywhere), so that its
# height reads as coherent harm; incoherent (grey); refused (blue) on top.
OUTCOME_COLOURS = {"complied": PALETTE[1], "incoherent": "0.62", "refused": PALETTE[0]}
UTILITY_COLOUR = PALETTE[2]


def _runs(runs) -> list[Path]:
    runs = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not runs:
        raise LandscapeError("no run folders given")
    return runs


def draw_curves(runs: str | Path | Iterable[str | Path]) -> Figure:
    """The figure of `plot_curves`: one line with its band per run and direction (a 2-D run
    gives its two lines through the origin), a dashed τ line when every run has the same τ."""
    runs = _runs(runs)
    series, models, norms, judges, taus = [], [], set(), set(), []
    for run in runs:
        config, summary, lines = load_lines(run)
        series += [(run, direction, pts) for direction, _, pts in lines]
        model = repr([config.get(k) for k in ("base", "aligned", "pair_seed")])
        models += [model] * len(lines)
        norms |= {norm for _, norm, _ in lines}
        judges.add(judge_name(config, summary))
        if summary.get("tau") is not None:
            taus.append(float(summary["tau"]))
    names = [d for _, d, _ in series]
    with styled():
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        # One direction in several runs (of several pairs, say): colour by direction, marker
        # by model, or by run where one model has the same direction twice.
        styles = None
        if len(set(names)) < len(names):
            if len(set(zip(names, models))) < len(names):
                models = [str(run) for run, _, _ in series]
            styles = looks(names, models)
        for i, (run, direction, pts) in enumerate(series):
            colour, marker = styles[i] if styles else look(i)
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


def has_answers_split(points: list[dict]) -> bool:
    """Whether a run's points carry what the outcome figures draw: coherence shares or utility."""
    return any("outcomes" in p or "utility" in p for p in points)


def _outcome_line(ax, pts: list[dict], tau, first: bool) -> list:
    x = [p["coords"][0] for p in pts]
    handles = []
    if all("outcomes" in p for p in pts):
        shares = [[p["outcomes"][k]["share"] for p in pts] for k in OUTCOME_COLOURS]
        stacks = ax.stackplot(
            x, *shares, colors=list(OUTCOME_COLOURS.values()), alpha=0.85, lw=0,
            labels=list(OUTCOME_COLOURS),
        )  # fmt: skip
        handles += stacks
    (asr,) = ax.plot(x, [p["asr"] for p in pts], "k.-", lw=1.2, ms=4, label="ASR (all answers)")
    handles.append(asr)
    if tau is not None:
        handles.append(ax.axhline(tau, color=TAU_COLOUR, ls="--", lw=1, label=f"τ = {tau:.2f}"))
    ax.axvline(0, color="0.3", lw=0.8, zorder=3)
    ax.set_ylim(0, 1)
    ax.set_xlim(min(x), max(x))
    ax.set_ylabel("share of answers" if first else "")
    with_u = [p for p in pts if "utility" in p]
    if with_u:
        twin = ax.twinx()
        (u,) = twin.plot(
            [p["coords"][0] for p in with_u],
            [utility_score(p["utility"]) for p in with_u],
            "o-", color=UTILITY_COLOUR, mec="white", mew=0.6, lw=2,
            label=f"utility ({utility_measure(with_u[0]['utility'])})",
        )  # fmt: skip
        twin.set_ylim(-0.02, 1.02)
        twin.set_ylabel("utility (benign prompts)", color=UTILITY_COLOUR)
        twin.tick_params(axis="y", colors=UTILITY_COLOUR)
        twin.grid(False)
        handles.append(u)
    return handles


def draw_outcomes(run: str | Path) -> Figure:
    """The figure of `plot_outcomes`: one panel per direction of the run (a 2-D run: its two
    lines through the origin), the shares of refused / complied / incoherent answers stacked
    against the coefficient, the ASR of all answers and τ over them, and the utility at each
    point on a second axis (where the run measured it)."""
    run = Path(run)
    config, summary, lines = load_lines(run)
    if not has_answers_split([p for _, _, pts in lines for p in pts]):
        raise LandscapeError(
            f"{run}: its points carry neither coherence outcomes nor utility (a run made with "
            "--no-coherence and without --utility-prompts): use --kind curve"
        )
    tau = summary.get("tau")
    with styled():
        fig = Figure(figsize=(5.2 * len(lines) + 0.8, 4.2))
        axes = fig.subplots(1, len(lines), squeeze=False)[0]
        handles = []
        for i, (ax, (direction, norm, pts)) in enumerate(zip(axes, lines)):
            found = _outcome_line(ax, pts, tau, i == 0)
            handles = handles if len(handles) >= len(found) else found
            ax.set_xlabel(f"α along {direction} ({norm} norm)")
            ax.set_title(direction)
        fig.legend(
            handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.02)
        )
        fig.suptitle(
            f"What the answers are along each direction ({judge_name(config, summary)} judge; "
            "stacked: shares of answers)"
        )
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_outcomes(run: str | Path, out: str | Path) -> list[Path]:
    """The shares of refused / complied / incoherent answers stacked along each direction, with
    the ASR, τ and the utility on a second axis; `<name>-outcomes.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_outcomes(run), out, f"{stem(Path(run))}-outcomes")
