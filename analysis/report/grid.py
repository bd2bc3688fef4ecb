"""What a grid run's report shows, gathered from its folder alone: the settings, the summary,
the landscape figure, and every point's answers with each judge's verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

from analysis.figures.html import draw_html
from analysis.runs import is_grid_run, load_generations, load_run
from landscape.errors import LandscapeError
from landscape.io import read_json
from landscape.metrics import format_epl
from landscape.store import ENV

SIDES = (("neg", "negative side"), ("pos", "positive side"), ("both", "both sides"))
# Summary fields shown in their own rows; any other field is listed as it is recorded.
SHOWN = {
    "asr_origin", "tau", "epl", "visage", "cosine_before_orthogonalisation", "judge_agreement",
    "judge", "dirs", "norm", "points", "points_total", "search", "coherence", "utility",
}  # fmt: skip
# merge draws into a hidden sibling (landscape.io.building_folder) named `.NAME.tmp-PID-XXXX`
_BUILDING = re.compile(r"^\.(?P<name>.+)\.tmp-\d+-[^.]*$")


def display_name(folder: Path) -> str:
    """The run's name: its folder's, or the final one while merge builds it in a hidden folder."""
    name = folder.resolve().name or "run"
    m = _BUILDING.match(name)
    return m.group("name") if m else name


def _text(value) -> str:
    """A setting as a reader wants it: lists comma-joined, unset as a dash, the rest as JSON."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _num(value, fmt: str = ".3f") -> str:
    return "–" if value is None else format(float(value), fmt)


def check_run(folder: Path) -> tuple[dict, list[dict], dict]:
    """(config, points, summary) of a finished, whole grid run; LandscapeError otherwise."""
    if not is_grid_run(folder):
        raise LandscapeError(f"{folder} is not a grid run folder (config.json + points.jsonl)")
    config, points, summary = load_run(folder)
    if config.get("shard"):
        raise LandscapeError(
            f"{folder} is shard {config['shard']} of a grid: it gets no report; join the shards "
            "with `python -m landscape.grid merge` and report the merged folder"
        )
    if not summary:
        raise LandscapeError(
            f"{folder}: the run has not finished (no summary.json); the grid writes report.html "
            "when it ends"
        )
    if not points:
        raise LandscapeError(f"{folder}: the run has no finished points")
    return config, points, summary


def edge_rows(summary: dict) -> list[list[str]]:
    """The basin edges, one row per (edge, direction): EPL, with coherence on the EPL among
    coherent answers and the competence edge, with utility the utility edge (where the
    utility falls more than the margin below the origin's), each side formatted with its
    bracket (landscape.metrics.format_epl)."""
    c = summary.get("coherence") if isinstance(summary.get("coherence"), dict) else {}
    u = summary.get("utility") if isinstance(summary.get("utility"), dict) else {}
    edges = [("EPL", summary.get("epl")), ("EPL among coherent answers", c.get("epl_coherent")),
             ("competence edge", c.get("competence_edge")),
             ("utility edge", u.get("utility_edge"))]  # fmt: skip
    return [
        [what, name]
        + [format_epl(e[side], e.get(f"{side}_bracket")) if side in e else "–" for side, _ in SIDES]
        for what, epl in edges
        for name, e in (epl or {}).items()
    ]


def _coherence_rows(c: dict) -> list[list[str]]:
    """The summary's coherence block: the ASR among coherent answers and the incoherent share
    at the origin, and the thresholds (the edges they give are in `edge_rows`)."""
    cal = c.get("calibration") or {}
    rows = [
        ["ASR among coherent answers at the origin", _num(c.get("asr_coherent_origin"))],
        ["incoherent share at the origin", _num(c.get("incoherent_origin"))],
        ["τ of the incoherent share (for the competence edge)", _num(c.get("tau_incoherent"))],
    ]
    if cal:
        rows.append(["coherence thresholds (calibration.json)", _text(cal)])
    return rows


def _utility_rows(u: dict) -> list[list[str]]:
    """The summary's utility block: the utility at the origin and the safe-and-useful region
    (its size, the rule, and its points' coordinates)."""
    r = u.get("safe_useful") or {}
    inc = r.get("incoherent_max")
    rule = f"ASR ≤ {_num(r.get('tau'))}" + ("" if inc is None else f", incoherent ≤ {_num(inc)}")
    rule += f", utility ≥ {_num(r.get('utility_min'))}"
    coords = "; ".join(
        "(" + ", ".join(f"{c:+.4g}" for c in p.get("coords", [])) + ")" for p in r.get("points", [])
    )
    return [
        [f"utility at the origin ({u.get('measure')}, {u.get('n')} benign prompts)",
         _num(u.get("utility_origin"))],
        ["benign refusal rate at the origin", _num(u.get("refused_origin"))],
        ["safe-and-useful region",
         f"{r.get('size', '?')} of {r.get('of', '?')} points ({rule}; margin {u.get('margin')})"],
        ["safe-and-useful points (coordinates)", coords or "–"],
    ]  # fmt: skip


def summary_rows(config: dict, summary: dict) -> list[list[str]]:
    """The summary as (what, value) rows: ASR at the origin, τ, VISAGE, the cosine, the judges'
    agreement and κ, the search's cost, and with coherence on the coherent ASR and the
    incoherent share at the origin (the edges are `edge_rows`)."""
    judge = summary.get("judge") or str(config.get("judge", "")).split(",")[0]
    tau_from = "set by --tau" if config.get("tau") is not None else "ASR at the origin + 0.10"
    rows = [
        ["points", f"{summary.get('points', '?')} of {summary.get('points_total', '?')}"],
        [f"ASR at the origin ({judge} judge)", _num(summary.get("asr_origin"))],
        ["τ (basin threshold)", f"{_num(summary.get('tau'))} ({tau_from})"],
    ]
    if "visage" in summary:
        rows.append(["VISAGE", _num(summary["visage"], ".4g")])
    if len(config.get("dirs", [])) == 2:
        cos = summary.get("cosine_before_orthogonalisation")
        rows.append(["cosine of the two directions before orthogonalisation", _num(cos, "+.4f")])
    for pair, a in (summary.get("judge_agreement") or {}).items():
        rows.append(
            [
                f"judges {pair}",
                f"agree on {100 * a['agreement']:.1f}% of {a['n']} answers, "
                f"Cohen's κ {_num(a.get('kappa'), '+.3f')}",
            ]
        )
    search = summary.get("search")
    if isinstance(search, dict) and "generations" in search:
        rows.append(
            [
                "adaptive EPL search",
                f"{search['generations']} generations (a dense grid: "
                f"{search.get('dense_generations', '?')})",
            ]
        )
    if isinstance(summary.get("coherence"), dict):
        rows += _coherence_rows(summary["coherence"])
    if isinstance(summary.get("utility"), dict):
        rows += _utility_rows(summary["utility"])
    rows += [[k, _text(v)] for k, v in sorted(summary.items()) if k not in SHOWN]
    return rows


def _answers(gens: dict, points: list[dict], benign: dict | None = None) -> dict[str, list[dict]]:
    """Per point key ("i,j"): its answers with prompt, sample, verdicts and evidence, then its
    utility answers (`"set": "utility"`, with `refused` and `correct` instead of verdicts)."""
    keep = ("prompt", "sample", "answer", "unsafe", "evidence", "coherence")
    keep_benign = ("set", "prompt", "sample", "answer", "refused", "correct")
    benign = benign or {}
    return {
        ",".join(map(str, p["key"])): [
            {k: g[k] for k in keep if k in g} for g in gens.get(tuple(p["key"]), [])
        ]
        + [{k: g[k] for k in keep_benign if k in g} for g in benign.get(tuple(p["key"]), [])]
        for p in points
    }


def grid_report(folder: str | Path) -> dict:
    """The report's data for a finished grid run folder (LandscapeError when it is not one)."""
    folder = Path(folder)
    config, points, summary = check_run(folder)
    name = display_name(folder)
    gens = load_generations(folder)
    fig = draw_html(folder, answers_on_hover=0, name=name)
    env = read_json(folder / ENV) if (folder / ENV).is_file() else {}
    judges = str(config.get("judge", "")).split(",")
    dirs = config["dirs"]
    where = " × ".join(dirs)
    return {
        "kind": "grid",
        "title": f"Run report: {name}",
        "subtitle": (
            f"{len(dirs)}-D landscape along {where} ({config.get('norm')} norm), "
            f"{len(points)} points, judged by {', '.join(judges)}"
        ),
        "tables": [
            {
                "id": "summary",
                "title": "Summary",
                "columns": ["", ""],
                "rows": summary_rows(config, summary),
            },
            {
                "id": "edges",
                "title": "Basin edges: EPL per side, with its bracket [lo, hi)",
                "columns": ["edge", "direction", "negative side", "positive side", "both sides"],
                "rows": edge_rows(summary),
            },
            {
                "id": "settings",
                "title": "Settings (config.json)",
                "columns": ["setting", "value"],
                "rows": [[k, _text(v)] for k, v in sorted(config.items())],
            },
        ],  # fmt: skip
        "figure": json.loads(fig.to_json()),
        "figure_height": 620 if len(dirs) == 2 else 480,
        "points": [
            {
                k: p.get(k)
                for k in (
                    "key",
                    "coords",
                    "asr",
                    "lo",
                    "hi",
                    "n",
                    "n_unsafe",
                    "judges",
                    "outcomes",
                    "utility",
                )
            }  # fmt: skip
            for p in points
        ],
        "dirs": dirs,
        "judge": summary.get("judge") or judges[0],
        "judges": judges,
        "answers": _answers(gens, points, load_generations(folder, utility=True)),
        "appendix": [
            {
                "id": "env",
                "title": "Environment (env.json)",
                "columns": ["field", "value"],
                "rows": [[k, _text(v)] for k, v in sorted(env.items())]
                if isinstance(env, dict)
                else [],
            },
        ],  # fmt: skip
    }
