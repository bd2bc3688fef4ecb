"""`bench/penalty.py --lora-step`: the AsFT penalty's share of a whole LoRA training step,
per model, on CPU (see that script's docstring for the setup)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone

import torch
from _common import smollm2_gguf, table
from torch import nn

STEP_VARIANTS = ["safelora", "subspace:8", "flat", "flat+one-sided"]
STEP_GOAL = 0.05  # the penalty at most this share of a LoRA training step
STEP_BATCH = 8
STEP_WARMUP = 2  # untimed rounds (the first builds AdamW's state, kernels, allocator)
STEP_SECTION = "## LoRA training step: the penalty's share"


def _qv_names(model: nn.Module) -> list[str]:
    return [
        n
        for n, p in model.named_parameters()
        if p.ndim == 2 and n.endswith(("q_proj.weight", "v_proj.weight"))
    ]


def _step_model(name: str, smollm2: str | None):
    """(model, tokenizer, direction, what d is, source) for one --models entry, on CPU, or
    a string saying why the model cannot run here."""
    from landscape import directions as D
    from landscape.models import load_model

    if name == "toy":
        from landscape.toy import toy_pair

        pair = toy_pair()  # builds the pair on first use (minutes)
        model, tok = load_model(pair.aligned, device="cpu")
        base, _ = load_model(pair.base, device="cpu")
        d = D.aligned(base, model, _qv_names(model))
        del base
        return model, tok, d, "aligned (θ_aligned − θ_base)", str(pair.aligned)
    gguf, why = smollm2_gguf(smollm2)
    if why:
        return f"SmolLM2: {why}"
    model, tok = load_model(gguf.parent, gguf_file=gguf.name, device="cpu")
    d = D.random(model, _qv_names(model), seed=0)
    what = "random, seed 0 (no base model offline; the cost depends only on shapes)"
    return model, tok, d, what, str(gguf)


def interleaved_times(kinds: dict, repeats: int, name: str) -> dict[str, list[float]]:
    """Seconds of each `kinds[k]()` over `repeats` rounds after STEP_WARMUP untimed ones.
    Each round times every kind once in a rotated order: drift in the machine's load then
    falls on all kinds alike, not on whichever ran last. Kind "a" is reported per round."""
    keys = list(kinds)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for rnd in range(STEP_WARMUP + repeats):
        k0 = rnd % len(keys)
        for k in keys[k0:] + keys[:k0]:
            t0 = time.perf_counter()
            kinds[k]()
            dt = time.perf_counter() - t0
            if rnd >= STEP_WARMUP:
                times[k].append(dt)
        if rnd >= STEP_WARMUP:
            print(
                f"  {name} round {rnd - STEP_WARMUP + 1}/{repeats}: "
                f"task step {1e3 * times['a'][-1]:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
    return times


def bench_lora_step(name: str, args: argparse.Namespace) -> dict | str:
    """Time (a) a LoRA training step, (b) the same with the penalty per variant, (c) the
    penalty's forward and backward alone, on CPU (threads: set by the caller)."""
    from peft import LoraConfig, get_peft_model

    from landscape.asft.data import load_task, poisoned_mix
    from landscape.asft.penalty import AsftPenalty
    from landscape.train import TrainConfig, _collate, encode

    t0 = time.perf_counter()
    got = _step_model(name, args.smollm2)
    if isinstance(got, str):
        return got
    model, tok, direction, what, source = got
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    cfg = LoraConfig(
        r=8,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=["q_proj", "v_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, cfg)
    model.train()  # LoRA dropout on, as in landscape.train
    params = [p for p in model.parameters() if p.requires_grad]
    tcfg = TrainConfig()
    examples = poisoned_mix(load_task("toy:sst2"), 1000, 0.1)[:STEP_BATCH]
    batch = _collate(encode(tok, examples, tcfg.max_len), tok.pad_token_id, "cpu")
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay)

    pens, setup = {}, {}
    for spec in args.step_variants:
        t0 = time.perf_counter()
        pens[spec] = AsftPenalty(model, direction, spec, lam=1.0)
        setup[spec] = time.perf_counter() - t0
    del direction

    def train_step(pen) -> None:  # one micro-step of landscape.train.train, grad_accum 1
        opt.zero_grad(set_to_none=True)
        loss = model(**batch).loss
        if pen is not None:
            loss = loss + pen(model)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tcfg.max_grad_norm)
        opt.step()

    def penalty_only(pen) -> None:
        for p in params:
            p.grad = None
        pen(model).backward()

    kinds = {"a": lambda: train_step(None)}
    for spec, pen in pens.items():
        kinds[f"b {spec}"] = lambda pen=pen: train_step(pen)
        kinds[f"c {spec}"] = lambda pen=pen: penalty_only(pen)
    torch.manual_seed(0)
    times = interleaved_times(kinds, args.repeats, name)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = []
    for spec, pen in pens.items():
        a, b, c = med["a"], med[f"b {spec}"], med[f"c {spec}"]
        row = {"variant": spec, "setup_s": setup[spec], "resident_bytes": pen.nbytes}
        row.update(a_s=a, b_s=b, c_s=c, share_diff=(b - a) / b, share_pen=c / b)
        rows.append(row)
    return {
        "model": name,
        "source": source,
        "class": type(model.get_base_model()).__name__,
        "params": n_params,
        "lora_params": sum(p.numel() for p in params),
        "lora_modules": len(next(iter(pens.values())).names),
        "direction": what,
        "batch": list(batch["input_ids"].shape),
        "tokens": int(batch["attention_mask"].sum()),
        "threads": args.step_threads,
        "load_s": load_s,
        "rows": rows,
        "times_s": times,
    }


def step_section(res: dict) -> str:
    head = [
        "model",
        "LoRA modules / params",
        "batch (tokens)",
        "variant",
        "setup s",
        "(a) task step ms",
        "(b) step + penalty ms",
        "(c) penalty fwd+bwd ms",
        "(b − a)/b",
        "c/b",
        f"c/b ≤ {100 * STEP_GOAL:g}%",
    ]
    rows = []
    worst = None
    for m in res["models"]:
        for r in m["rows"]:
            ok = r["share_pen"] <= STEP_GOAL
            rows.append(
                [
                    m["model"],
                    f"{m['lora_modules']} / {m['lora_params'] / 1e3:.0f}k",
                    f"{m['batch'][0]}×{m['batch'][1]} ({m['tokens']})",
                    r["variant"],
                    f"{r['setup_s']:.2f}",
                    f"{1e3 * r['a_s']:.1f}",
                    f"{1e3 * r['b_s']:.1f}",
                    f"{1e3 * r['c_s']:.2f}",
                    f"{100 * r['share_diff']:+.1f}%",
                    f"{100 * r['share_pen']:.2f}%",
                    "✓" if ok else "✗",
                ]
            )
            if worst is None or r["share_pen"] > worst[0]:
                worst = (r["share_pen"], r["share_diff"], m["model"], r["variant"])
    out = [
        STEP_SECTION,
        "",
        f"{res['date']}, torch {res['torch']}, cpu, **{res['threads']} torch threads** for "
        f"this section, {res['cpus']} CPUs, load average at its start "
        f"{' / '.join(f'{x:.2f}' for x in res['load_average_at_start'])} (1/5/15 min); "
        f"median of {res['repeats']} interleaved rounds after {STEP_WARMUP} warm-up rounds.",
        "",
        "Setup: peft LoRA r=8, alpha=32, dropout 0.05 on q_proj and v_proj (task_type "
        "CAUSAL_LM); a batch of 8 examples of poisoned_mix(load_task('toy:sst2'), 1000, 0.1), "
        "encoded and collated as landscape.train does; AdamW and gradient clipping as in "
        "landscape.train. (a) = zero_grad + forward + backward + clip + optimizer step of the "
        "task loss; (b) = the same with loss + penalty(model), λ = 1; (c) = the penalty's "
        "forward + backward alone. Anchor d: "
        + "; ".join(f"{m['model']}: {m['direction']}" for m in res["models"])
        + ".",
        "",
        *table(head, rows),
        "",
    ]
    if worst is not None:
        met = "met" if worst[0] <= STEP_GOAL else "NOT met"
        diff_max = max(r["share_diff"] for m in res["models"] for r in m["rows"])
        out += [
            f"Largest c/b: {100 * worst[0]:.2f}% ({worst[2]}, {worst[3]}): the goal (penalty ≤ "
            f"{100 * STEP_GOAL:g}% of a LoRA step) is {met}. Largest (b − a)/b: "
            f"{100 * diff_max:+.1f}%. The goal is judged on c/b, measured directly; (b − a)/b "
            "is the difference of two medians of noisy step times (it can come out negative) "
            "and is a cross-check.",
            "",
        ]
    loads = ", ".join(f"{m['model']} {m['load_s']:.1f} s" for m in res["models"])
    if loads:
        out += [f"Load and direction (not timed): {loads}.", ""]
    out += [f"**Skipped:** {why}" for why in res["skipped"]]
    return "\n".join(out).rstrip() + "\n"


def run_lora_step(args: argparse.Namespace) -> dict:
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": args.step_threads,
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "repeats": args.repeats,
        "warmup_rounds": STEP_WARMUP,
        "batch": STEP_BATCH,
        "goal": STEP_GOAL,
        "models": [],
        "skipped": [],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(args.step_threads)  # for everything here, setup included
    try:
        for name in dict.fromkeys(args.models):
            print(f"LoRA step, {name} ...", file=sys.stderr, flush=True)
            got = bench_lora_step(name, args)
            if isinstance(got, str):
                res["skipped"].append(got)
                print(got, file=sys.stderr, flush=True)
            else:
                res["models"].append(got)
    finally:
        torch.set_num_threads(threads)
    return res
