"""Adaptive EPL search against a dense grid: generations, time, and whether the EPLs agree.

    python bench/epl_search.py [--dirs aligned harm] [--steps 21] [--range LOW HIGH]
                               [--repeats N] [--out FILE]

For each direction, on the toy pair, a dense 1-D grid (`--steps` points over `--range`) and
`--epl-search` with the same flags (so its bisection tolerance is the dense grid's step) run
one after the other in this process, in fresh run folders, each timed end to end (loading the
model included) and by its points alone (timing.json). The order alternates from one
direction (and repeat) to the next, so that a drifting machine load favours neither. The EPLs
agree when each side differs by at most one grid step. The goal: the search uses at most a
third of the dense grid's generations.

Run it on a quiet machine: on a few cores, any other CPU-heavy process slows torch down
several times over; the load average at start is recorded for that reason.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, head_lines, parser, start, table, write_report

GOAL = 1 / 3  # the search's generations over the dense grid's, at most
Z_REPLAY = {"95%": 1.959963984540054, "97.5%": 2.241402727604947, "99%": 2.5758293035489}


def run_one(direction: str, search: bool, args: argparse.Namespace, folder: Path) -> dict:
    from landscape.grid import GridConfig, run_grid
    from landscape.io import read_json, read_jsonl

    cfg = GridConfig(dirs=[direction], steps=args.steps, range=tuple(args.range), epl_search=search)
    out = folder / f"{direction}-{'search' if search else 'dense'}"
    t = time.perf_counter()
    summary = run_grid(cfg, out, show_progress=False)
    wall = time.perf_counter() - t
    timing = read_json(out / "timing.json")
    points = read_jsonl(out / "points.jsonl")
    e = summary["epl"][direction]
    return {
        "direction": direction,
        "method": "search" if search else "dense",
        "points": len(points),
        "generations": sum(p["n"] for p in points),
        "wall_s": wall,
        "points_s": timing["perturb"] + timing["generate"] + timing["judge"],
        "epl": {k: e[k] for k in ("neg", "pos", "neg_censored", "pos_censored")},
        "brackets": [e.get("neg_bracket"), e.get("pos_bracket")],
        "path": [[p["coords"][0], p["n_unsafe"], p["n"]] for p in points],
        "tau": summary["tau"],
    }


def replay(dense_run: Path, direction: str, step: float, seeds: int) -> dict:
    """The search replayed on the dense run's own verdicts, over many prompt shuffles (the
    `seed` of search_epl) and interval widths: how often one seed's early calls move the EPL.

    With the tolerance and first step equal to the grid step, every point the search asks for
    is a grid point, whose answers the dense run holds (greedy answers do not depend on which
    other prompts share a batch, up to float noise)."""
    import statistics

    from landscape.io import read_json, read_jsonl
    from landscape.search import search_epl

    points = read_jsonl(dense_run / "points.jsonl")
    summary = read_json(dense_run / "summary.json")
    judge = summary["judge"]
    alpha = {tuple(p["key"]): p["coords"][0] for p in points}
    verdicts: dict[float, list[bool]] = {}
    for g in read_jsonl(dense_run / "generations.jsonl"):
        verdicts.setdefault(round(alpha[tuple(g["key"])], 9), []).append(g["unsafe"][judge])
    n = len(verdicts[0.0])
    dense = summary["epl"][direction]

    def evaluate(a, batch):
        return [verdicts[round(a, 9)][i] for i in batch]

    out = {}
    for label, z in Z_REPLAY.items():
        exact = near = 0
        gens = []
        for seed in range(seeds):
            r = search_epl(evaluate, list(range(n)), tol=step, z=z, seed=seed)
            e = r["epl"]
            exact += (e["neg"], e["pos"]) == (dense["neg"], dense["pos"])
            near += all(abs(e[k] - dense[k]) <= step * (1 + 1e-9) for k in ("neg", "pos"))
            gens.append(r["generations"])
        out[label] = {
            "z": z,
            "exact": exact / seeds,
            "within_one_step": near / seeds,
            "generations_mean": statistics.mean(gens),
            "share_mean": statistics.mean(gens) / (len(points) * n),
            "share_max": max(gens) / (len(points) * n),
        }
    return out


def _epl(r: dict) -> str:
    e = r["epl"]
    return (
        f"{e['neg']:.4g}{'+' if e['neg_censored'] else ''} / "
        f"{e['pos']:.4g}{'+' if e['pos_censored'] else ''}"
    )


def _bracket(b) -> str:
    if b is None:
        return "–"
    return f"({b[0]:.4g}, {b[1]:.4g}]" if b[1] is not None else f"≥ {b[0]:.4g}"


def _replay_section(replays: list[dict], shuffles: int) -> list[str]:
    """The table of the search replayed on the dense runs' verdicts."""
    header = ["direction", "interval", "EPL = dense", "within 1 step", "generations (mean)",
              "vs dense (mean)", "vs dense (worst)"]  # fmt: skip
    rows = [
        [
            p["dense"]["direction"],
            label,
            f"{r['exact']:.1%}",
            f"{r['within_one_step']:.1%}",
            f"{r['generations_mean']:.0f}",
            f"{r['share_mean']:.1%}",
            f"{r['share_max']:.1%}",
        ]
        for p in replays
        for label, r in p["replay"].items()
    ]
    return [
        "",
        f"## Replays over {shuffles} prompt shuffles",
        "",
        "The search replayed on the dense run's recorded verdicts (no model time), once per "
        "prompt shuffle (search_epl's `seed`; the runs above use seed 0), with Wilson "
        "intervals of three widths (`--epl-confidence`; 95% by default). An early call at a point "
        "whose ASR is close to τ can go the other way than all prompts would: this shows "
        "how often that moves the EPL, and what a wider interval costs.",
        "",
        *table(header, rows),
    ]


def report(res: dict) -> str:
    step = res["grid_step"]
    lines = [
        *head_lines("Adaptive EPL search vs a dense grid", res),
        f"- toy pair, 1-D runs along each direction over --range {res['range'][0]:g} "
        f"{res['range'][1]:g}: dense = {res['steps']} points (step {step:.4g}); search = "
        f"`--epl-search` with the same flags (tolerance {step:.4g}, batches of at least 16 "
        "prompts); greedy, keyword judge, default τ (ASR at the origin + 0.10)",
        "- wall: the whole run_grid call (model loading, directions, figure included); "
        "points: perturb + generate + judge only",
        "",
    ]
    header = ["direction", "method", "points", "generations", "vs dense", "wall s",
              "points s", "EPL − / +", "bracket −", "bracket +", "agrees (≤ 1 step)"]  # fmt: skip
    rows = []
    for pair in res["pairs"]:
        d, s = pair["dense"], pair["search"]
        for r in (d, s):
            search = r is s
            rows.append(
                [
                    r["direction"],
                    r["method"],
                    r["points"],
                    r["generations"],
                    f"{r['generations'] / d['generations']:.1%}" if search else "",
                    f"{r['wall_s']:.1f}",
                    f"{r['points_s']:.1f}",
                    _epl(r),
                    _bracket(r["brackets"][0]) if search else "",
                    _bracket(r["brackets"][1]) if search else "",
                    ("✓" if pair["agrees"] else "✗") if search else "",
                ]
            )
    lines += ["## Runs", "", *table(header, rows), ""]
    t = res["totals"]
    lines += [
        "## Totals",
        "",
        f"- generations: search {t['search_generations']} vs dense {t['dense_generations']}"
        f" = {t['share']:.1%} (goal ≤ {GOAL:.0%}: {'✓' if t['share'] <= GOAL else '✗'})",
        f"- wall: search {t['search_wall_s']:.1f} s vs dense {t['dense_wall_s']:.1f} s "
        f"({t['search_wall_s'] / t['dense_wall_s']:.1%}); points only: search "
        f"{t['search_points_s']:.1f} s vs dense {t['dense_points_s']:.1f} s "
        f"({t['search_points_s'] / t['dense_points_s']:.1%})",
        f"- EPLs within one grid step: {t['agree']} of {len(res['pairs'])} runs",
        "",
        "Search paths (α, unsafe/answered, in the order evaluated):",
        "",
    ]
    for pair in res["pairs"]:
        s = pair["search"]
        path = ", ".join(f"{a:+.4g}: {k}/{n}" for a, k, n in s["path"])
        lines.append(f"- {s['direction']}: {path}")
    replays = [p for p in res["pairs"] if p.get("replay")]
    if replays:
        lines += _replay_section(replays, res["replays"])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--dirs", nargs="+", default=["aligned", "harm"])
    p.add_argument("--steps", type=int, default=21, help="dense grid points per direction")
    p.add_argument("--range", nargs=2, type=float, default=[-0.25, 0.25], metavar=("LOW", "HIGH"))
    p.add_argument("--repeats", type=int, default=1, help="times each pair of runs is repeated")
    p.add_argument(
        "--replays",
        type=int,
        default=200,
        help="prompt shuffles to replay the search over on the dense run's verdicts (0: none)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "epl_search.md")
    args = p.parse_args(argv)
    if args.steps < 2 or args.repeats < 1 or args.replays < 0:
        p.error("--steps must be at least 2, --repeats at least 1, --replays at least 0")
    logging.basicConfig(level=logging.WARNING)

    res = {
        **start("bench/epl_search.py", argv),
        "steps": args.steps,
        "range": args.range,
        "grid_step": (args.range[1] - args.range[0]) / (args.steps - 1),
        "replays": args.replays,
        "pairs": [],
    }
    from landscape.toy import toy_finetune, toy_pair

    # a first use builds the pair and the harmful fine-tune (minutes): outside the timing
    toy_pair()
    if any(d in ("harm", "harmful") for d in args.dirs):
        toy_finetune("harmful")
    turn = 0
    with tempfile.TemporaryDirectory(prefix="epl-bench-") as tmp:
        for rep in range(args.repeats):
            for direction in args.dirs:
                folder = Path(tmp) / f"rep{rep}"
                order = (False, True) if turn % 2 == 0 else (True, False)
                turn += 1
                runs = {}
                for search in order:
                    print(f"{direction}: {'search' if search else 'dense'} ...", flush=True)
                    r = run_one(direction, search, args, folder)
                    runs[r["method"]] = r
                d, s = runs["dense"], runs["search"]
                agrees = all(
                    abs(d["epl"][k] - s["epl"][k]) <= res["grid_step"] * (1 + 1e-9)
                    for k in ("neg", "pos")
                )
                pair = {"dense": d, "search": s, "agrees": agrees, "first": order[0]}
                if args.replays and rep == 0:
                    print(f"{direction}: replaying {args.replays} shuffles ...", flush=True)
                    try:
                        pair["replay"] = replay(
                            folder / f"{direction}-dense", direction, res["grid_step"], args.replays
                        )
                    except KeyError:  # the search asked for a point off the dense grid
                        pair["replay"] = None
                res["pairs"].append(pair)
    pairs = res["pairs"]

    def total(method, key):
        return sum(p[method][key] for p in pairs)

    res["totals"] = {
        "dense_generations": total("dense", "generations"),
        "search_generations": total("search", "generations"),
        "share": total("search", "generations") / total("dense", "generations"),
        "dense_wall_s": total("dense", "wall_s"),
        "search_wall_s": total("search", "wall_s"),
        "dense_points_s": total("dense", "points_s"),
        "search_points_s": total("search", "points_s"),
        "agree": sum(p["agrees"] for p in pairs),
    }
    write_report(args.out, report(res), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
