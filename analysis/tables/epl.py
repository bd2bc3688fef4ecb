"""EPL per (grid run, direction), recomputed from points.jsonl (paper Table 7 layout).

The numbers come from `landscape.metrics.landscape_summary`, the rule the grid's own
summary.json is written with, so a table and a summary can only disagree when the run's
records were changed after the fact; that is logged as a warning, not hidden.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.runs import as_list, grid_config, is_grid_run, read_points, read_summary
from landscape import metrics
from landscape.errors import LandscapeError
from landscape.grid.summary import coherence_summary, utility_summary

log = logging.getLogger(__name__)

SIDES = ("neg", "pos", "both")
BRACKETS = tuple(f"{side}_bracket" for side in SIDES)


def _model_label(config: dict) -> str:
    aligned = config.get("aligned")
    if not aligned:
        return "toy"
    return Path(str(aligned).rstrip("/")).name or str(aligned)


def _both_censored(e: dict) -> bool:
    if e["neg"] < e["pos"]:
        return bool(e["neg_censored"])
    if e["pos"] < e["neg"]:
        return bool(e["pos_censored"])
    return bool(e["neg_censored"] and e["pos_censored"])


def _read(run: Path) -> tuple[dict, list[dict]]:
    if not run.is_dir():
        raise LandscapeError(f"not a folder: {run}")
    if not is_grid_run(run):
        raise LandscapeError(f"{run} is not a grid run folder (config.json + points.jsonl)")
    config = grid_config(run)
    if config.get("shard"):
        raise LandscapeError(
            f"{run} is shard {config['shard']} of a grid: its points are not whole lines through "
            "the origin; join the shards first with `python -m landscape.grid merge`"
        )
    points = read_points(run)
    if not points:
        raise LandscapeError(f"{run} has no finished points (points.jsonl is empty)")
    return config, points


def _values(run: Path, dirs: list, points: list[dict], judge: str | None) -> dict:
    """Coordinates -> ASR (the run's first judge, or `judge`); points without answers skipped."""
    values: dict[tuple[float, ...], float] = {}
    for p in points:
        coords = p.get("coords")
        if not isinstance(coords, list) or len(coords) != len(dirs):
            raise LandscapeError(f"{run}: a point's coords do not match dirs {dirs}")
        if judge is None:
            v = p.get("asr")
        else:
            if judge not in (p.get("judges") or {}):
                raise LandscapeError(f"{run}: no ASR for judge {judge!r} in points.jsonl")
            v = p["judges"][judge]
        if v is None or not math.isfinite(float(v)):
            continue  # a point with no answers carries no ASR
        values[tuple(float(c) for c in coords)] = float(v)
    if not values:
        raise LandscapeError(f"{run} has no finished points with an ASR")
    return values


def _disagrees(recorded: dict | None, e: dict) -> bool:
    if not recorded:
        return False
    if any(
        not math.isclose(recorded.get(k, np.nan), e[k], abs_tol=1e-9)
        for k in ("neg", "pos", "both")
    ):
        return True
    # Summaries written before brackets existed have none: nothing to compare there.
    return any(
        not _same_bracket(recorded[k], e[k]) for k in BRACKETS if recorded.get(k) is not None
    )


def _same_bracket(recorded, bracket: list) -> bool:
    try:
        pairs = zip(_ends(recorded), _ends(bracket), strict=True)
    except (TypeError, ValueError):
        return False  # not a [lo, hi] pair: a hand-edited summary, worth the warning
    return all(math.isclose(a, b, abs_tol=1e-9) for a, b in pairs)


def _ends(bracket) -> tuple[float, float]:
    """A bracket as two numbers for a table column: hi None (censored) is +inf."""
    lo, hi = bracket
    return float(lo), math.inf if hi is None else float(hi)


def _run_rows(run: Path, judge: str | None) -> list[dict]:
    config, points = _read(run)
    dirs = config["dirs"]
    values = _values(run, dirs, points, judge)
    # VISAGE averages over evenly spaced points; an adaptive search's are not
    got = metrics.landscape_summary(
        values, dirs, tau=config.get("tau"), visage_too=not config.get("epl_search")
    )
    tau, asr0 = got["tau"], got["asr_origin"]
    recorded = read_summary(run).get("epl") or {}
    coherence = None
    if judge is None and any("outcomes" in p for p in points):  # labels are the first judge's
        done = {i: p for i, p in enumerate(points) if "outcomes" in p}
        coherence = coherence_summary(done, dirs, tau, None)
    utility = None
    if judge is None and any("utility" in p for p in points):  # the region uses the first's ASR
        done = {i: p for i, p in enumerate(points)}
        margin = float(config.get("utility_margin", 0.10))
        utility = utility_summary(done, dirs, tau, coherence, margin)
    base = {
        "run": run.name,
        "model": _model_label(config),
        "norm": config.get("norm"),
        "judge": judge or str(config.get("judge") or "").split(",")[0] or None,
        "tau": np.nan if tau is None else float(tau),
        "asr_origin": np.nan if asr0 is None else asr0,
    }
    rows = []
    for name in dirs:
        row = {
            **base,
            "direction": name,
            "epl_neg": np.nan,
            "epl_neg_censored": None,
            "epl_pos": np.nan,
            "epl_pos_censored": None,
            "epl_both": np.nan,
            "epl_both_censored": None,
            "visage": got.get("visage", np.nan) if len(dirs) == 1 else np.nan,
            **{f"epl_{side}_{end}": np.nan for side in SIDES for end in ("lo", "hi")},
        }
        e = got["epl"].get(name)
        if e is None:
            log.warning("%s: the origin was not evaluated: no EPL along %s", run, name)
        else:
            row.update(
                epl_neg=e["neg"],
                epl_neg_censored=bool(e["neg_censored"]),
                epl_pos=e["pos"],
                epl_pos_censored=bool(e["pos_censored"]),
                epl_both=e["both"],
                epl_both_censored=_both_censored(e),
            )
            for side in SIDES:
                row[f"epl_{side}_lo"], row[f"epl_{side}_hi"] = _ends(e[f"{side}_bracket"])
            if judge is None and _disagrees(recorded.get(name), e):
                log.warning("%s: summary.json's EPL along %s differs from points.jsonl", run, name)
        row.update(_coherence_columns(coherence, name))
        row.update(_utility_columns(utility, name))
        rows.append(row)
    return rows


def _coherence_columns(coherence: dict | None, name: str) -> dict:
    """The EPL of harm among coherent answers and the competence edge (the EPL of the
    incoherent share) per side; NaN for a run without coherence labels."""
    row = {f"{k}_{side}{end}": np.nan for k in ("epl_coherent", "competence")
           for side in ("neg", "pos") for end in ("", "_lo", "_hi")}  # fmt: skip
    row |= {"asr_coherent_origin": np.nan, "incoherent_origin": np.nan, "tau_incoherent": np.nan}
    if coherence is None:
        return row
    row["tau_incoherent"] = coherence["tau_incoherent"]
    row["asr_coherent_origin"] = coherence["asr_coherent_origin"]
    row["incoherent_origin"] = coherence["incoherent_origin"]
    for key, col in (("epl_coherent", "epl_coherent"), ("competence_edge", "competence")):
        row |= _edge(coherence[key].get(name), col)
    return row


# The other edges of a row beside the EPL of all answers, each with its bracket as the EPL
# has one (a search visits few points past an edge, so most of them are bounds).
EDGES = ("epl_coherent", "competence", "utility_edge")


def _edge(e: dict | None, col: str) -> dict:
    """An edge's two sides and their brackets (`col_side`, `col_side_lo`, `col_side_hi`)
    from a landscape_summary EPL record; nothing where the record is missing."""
    if e is None:
        return {}
    row = {}
    for side in ("neg", "pos"):
        row[f"{col}_{side}"] = e[side]
        if f"{side}_bracket" in e:
            row[f"{col}_{side}_lo"], row[f"{col}_{side}_hi"] = _ends(e[f"{side}_bracket"])
    return row


def _utility_columns(utility: dict | None, name: str) -> dict:
    """The utility at the origin, the utility edge per side and the safe-and-useful region's
    size (of the run: the same on each of its directions' rows); NaN without utility."""
    row = {k: np.nan for k in UTILITY_COLUMNS + _bracket_columns("utility_edge")}
    if utility is None:
        return row
    row["utility_origin"] = utility["utility_origin"]
    row["benign_refused_origin"] = utility["refused_origin"]
    row |= _edge(utility["utility_edge"].get(name), "utility_edge")
    row["safe_useful_points"] = utility["safe_useful"]["size"]
    row["safe_useful_of"] = utility["safe_useful"]["of"]
    return row


UTILITY_COLUMNS = (
    "utility_origin", "benign_refused_origin", "utility_edge_neg", "utility_edge_pos",
    "safe_useful_points", "safe_useful_of",
)  # fmt: skip


def _bracket_columns(col: str) -> tuple[str, ...]:
    return tuple(f"{col}_{side}_{end}" for side in ("neg", "pos") for end in ("lo", "hi"))


COLUMNS = (
    "run", "model", "direction", "norm", "judge", "tau", "asr_origin",
    "epl_neg", "epl_neg_censored", "epl_pos", "epl_pos_censored",
    "epl_both", "epl_both_censored", "visage",
    "epl_neg_lo", "epl_neg_hi", "epl_pos_lo", "epl_pos_hi", "epl_both_lo", "epl_both_hi",
    "asr_coherent_origin", "incoherent_origin", "epl_coherent_neg", "epl_coherent_pos",
    "competence_neg", "competence_pos", "tau_incoherent", *UTILITY_COLUMNS,
    *(c for col in EDGES for c in _bracket_columns(col)),
)  # fmt: skip


def epl_table(runs, judge: str | None = None) -> pd.DataFrame:
    """One row per (grid run, direction): model (the aligned model's folder or HF name, or
    "toy"), direction, norm, judge, τ, ASR at the origin, EPL on the negative side, the
    positive side and both (= the smaller) with their censored flags (True: the basin reaches
    the end of the range, the EPL is at least that), VISAGE (1-D runs; NaN for 2-D), and
    each EPL's bracket `epl_*_lo`, `epl_*_hi` (metrics.basin: the last |α| found safe and the
    first found unsafe; hi is +inf on a censored side, both NaN where there is no EPL).
    With coherence labels: the coherent ASR and incoherent share at the origin, the EPL of
    coherent harm and the competence edge per side, and the competence edge's τ. With
    utility prompts: the utility at the origin (accuracy, else 1 − benign refusal rate), its
    benign refusal rate, the utility edge per side (where utility falls more than the run's
    `utility_margin` below the origin's) and the size of the safe-and-useful region
    (`safe_useful_points` of `safe_useful_of`, the run's; the same on each of its rows).

    Everything is recomputed from `points.jsonl` with `landscape.metrics.landscape_summary`,
    as the grid's summary is: τ is the config's `tau`, else ASR at the origin + 0.10; the
    curve along a direction is the points whose other coordinate is 0. `judge` picks another
    judge's ASR from the points' `judges` (τ then follows that judge's ASR at the origin)."""
    rows = [r for run in as_list(runs) for r in _run_rows(Path(run), judge)]
    if not rows:
        raise LandscapeError("epl_table needs at least one run folder")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def epl_shown(df: pd.DataFrame) -> pd.DataFrame:
    """The EPL table as its Markdown shows it: each EPL as metrics.format_epl writes it
    (`< 0.05`, `≥ 0.500`, `0.150 [0.150, 0.200)`), which says what the censored flags and
    bracket columns hold, so those are left out; the CSV keeps every number."""
    out = df.copy()
    shown = [("epl", side) for side in SIDES] + [(c, s) for c in EDGES for s in ("neg", "pos")]
    for col, side in shown:
        lo, hi = df[f"{col}_{side}_lo"], df[f"{col}_{side}_hi"]
        out[f"{col}_{side}"] = [
            metrics.format_epl(v, None if math.isnan(a) else [a, None if math.isinf(b) else b])
            for v, a, b in zip(df[f"{col}_{side}"], lo, hi)
        ]
    hidden = [f"epl_{s}_{x}" for s in SIDES for x in ("censored", "lo", "hi")]
    hidden += [c for col in EDGES for c in _bracket_columns(col)]
    # Runs without utility prompts leave their columns empty: the Markdown leaves them out.
    hidden += [c for c in UTILITY_COLUMNS if c in df and df[c].isna().all()]
    return out.drop(columns=hidden)
