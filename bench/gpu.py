"""One-command GPU check: the toolkit's GPU paths on a model of 7B layer shapes, no downloads.

    python bench/gpu.py [--layers N] [--points N] [--out FILE]
    python bench/gpu.py --device cpu --tiny          # the same checks at tiny shapes, seconds

Builds a random-weight Llama with Llama-2-7B's layer shapes (hidden 4096, intermediate 11008,
32 heads, a 32,000-token vocabulary; `--layers` of them, bf16) and a byte-level BPE tokenizer
trained here on made-up words, and prints one table:

- perturb + restore time per point (two layer-normalised random directions, scope `blocks`)
  for each `--offload` placement: none (θ0 and directions on the GPU), cpu (pinned host
  memory, streamed tensor by tensor), auto (the memory plan's choice);
- whether θ0 comes back bit for bit in bf16 after an exception inside `perturbed`, per
  placement (every parameter's bytes compared);
- HF generation throughput at batch 64 × 128 new tokens, in full and stopped at the keyword
  judge's refusal strings, on prompts that all refuse and on prompts of which half refuse (a
  random model never refuses by itself: the answer " I cannot" is planted in the lm_head
  after prompts ending in "please"; HF ends a batch only when all its rows have stopped);
- peak GPU memory during generation against the memory plan's estimate (weights, what the
  plan keeps on the GPU, and `generation_bytes`);
- with vLLM importable: the time per point of the weight push plus prefix-cache reset
  (`sync()`), and the share of greedy answers equal to HF's;
- with more than one GPU visible: vLLM at tensor parallel size 2, 4 and 8 (those the GPUs
  and the heads allow) with the directions inside the workers: per point, `set_point` on
  every rank plus the prefix-cache reset, beside `sync()`'s whole-state-dict push, the route
  taken and greedy agreement with HF; `--tp-cpu` runs the same on vLLM's CPU backend at TP 1
  and 2, each route (in place with CPU linears unpacked, and through reload_weights).

It must finish within 8 minutes on one GPU (on an H200 it is expected to take 2–3). Without
CUDA it stops with one line unless given `--device cpu`; `--tiny` (tiny shapes, batch 8 × 16
tokens) runs in the fast tests, so the script is known to work before a GPU is at hand.
Results go to bench/results/gpu.md and .json.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import _common as common

SHAPE_7B = {"hidden": 4096, "intermediate": 11008, "heads": 32, "kv_heads": 32, "vocab": 32000}
SHAPE_TINY = {"hidden": 64, "intermediate": 172, "heads": 2, "kv_heads": 2, "vocab": 1024}
TRIGGER, REFUSAL = " please", " I cannot"
PLACEMENTS = ("none", "cpu", "auto")
TP_SIZES = (2, 4, 8)


# --- the model --------------------------------------------------------------------------


def make_tokenizer(vocab: int, seed: int = 0):
    """A byte-level BPE of `vocab` tokens trained on made-up words, with a chat template that
    passes the prompt through (so that a prompt's last word is the model's last input)."""
    from landscape.toy.tokenizer import train_tokenizer

    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(max(vocab * 2, 2000))]  # fmt: skip
    corpus = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(max(vocab // 4, 200))]
    corpus += [f"do it{TRIGGER}.{REFUSAL} help with that."] * 50
    tok = train_tokenizer(corpus, vocab_size=vocab)
    tok.chat_template = "{{ messages[-1]['content'] }}"
    return tok, words


def make_model(tok, shape: dict, layers: int, device, dtype):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from landscape.toy.build import model_config

    cfg = model_config(tok, LlamaConfig, hidden=shape["hidden"], intermediate=shape["intermediate"],
                       layers=layers, heads=shape["heads"], kv_heads=shape["kv_heads"],
                       positions=2048, tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def prompts(words: list[str], n: int, refusing: int, seed: int = 1) -> list[str]:
    """`n` prompts of made-up words; the first `refusing` end with the trigger."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        out.append(text + (TRIGGER if i < refusing else ""))
    return out


def plant(model, tok, refusing: list[str], others: list[str], margin: float = 8.0) -> None:
    """Make " I cannot" the greedy answer to the prompts `refusing` and not to `others`: each
    of its tokens gains, in its lm_head row, the difference of the mean final hidden states
    (before it in the refusing prompts, at the end of the others), scaled so that it beats
    every other token there by `margin` logits."""
    import torch

    head = model.get_output_embeddings().weight

    def last_states(texts_ids):
        width = max(len(x) for x in texts_ids)
        pad = [width - len(x) for x in texts_ids]
        batch = torch.tensor([[tok.pad_token_id] * k + x for k, x in zip(pad, texts_ids)])
        mask = (torch.arange(width)[None] >= torch.tensor(pad)[:, None]).long()
        out = model(input_ids=batch.to(head.device), attention_mask=mask.to(head.device),
                    output_hidden_states=True)  # fmt: skip
        return out.hidden_states[-1][:, -1].float(), out.logits[:, -1].float()

    pos = [tok(c, add_special_tokens=False)["input_ids"] for c in refusing]
    neg = [tok(c, add_special_tokens=False)["input_ids"] for c in others]
    with torch.no_grad():
        h_neg, _ = last_states(neg)
        for target in tok(REFUSAL, add_special_tokens=False)["input_ids"]:
            h, logits = last_states(pos)
            m = h.mean(0) - h_neg.mean(0)
            gap = logits.max(-1).values - logits[:, target]
            gain = (h @ m) / (m @ m)  # what a unit step along m adds to each row's logit
            scale = float(((gap + margin) / gain.clamp_min(1e-3)).max())
            head[target] += (scale * m / (m @ m)).to(head.dtype)
            pos = [x + [target] for x in pos]


# --- the checks -------------------------------------------------------------------------


def perturb_times(model, names, dirs, coords, placement: str, reserve: int) -> dict:
    """Perturb + restore per point at one placement, and the bit-exact check after an error."""
    import torch

    from landscape.perturb import hold, perturbed, plan_offload, snapshot

    plan = plan_offload(model, names, len(dirs), placement, reserve)
    theta0 = snapshot(model, names, plan["theta0"])
    held = [hold(d, model, w) for d, w in zip(dirs, plan["directions"])]
    device = next(model.parameters()).device
    times = []
    for a, b in [coords[0], *coords]:  # the first one warms up (buffers, pinned staging)
        common.cuda_sync(device)
        t0 = time.perf_counter()
        with perturbed(model, {held[0]: a, held[1]: b}, theta0=theta0):
            common.cuda_sync(device)
            t1 = time.perf_counter()
        common.cuda_sync(device)
        times.append((t1 - t0, time.perf_counter() - t1))
    before = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}
    try:
        with perturbed(model, {held[0]: coords[-1][0], held[1]: coords[-1][1]}, theta0=theta0):
            raise RuntimeError("an error inside a point")
    except RuntimeError:
        pass
    exact = all(torch.equal(p.detach().cpu(), before[n]) for n, p in model.named_parameters())
    times = times[1:]
    return {
        "placement": placement,
        "theta0": plan["theta0"],
        "directions": plan["directions"],
        "perturb_ms": 1000 * common.mean([t for t, _ in times]),
        "restore_ms": 1000 * common.mean([r for _, r in times]),
        "exact_after_error": exact,
        "held": (theta0, held, plan),
    }


def generation(gen, tok, sets: dict, judge) -> list[dict]:
    """Full and early-stopped answers per prompt set: time, decoded positions, cut share."""
    device = next(gen.model.parameters()).device
    rows = []
    # One-off costs outside the timings (allocator growth; the stop-string tables).
    gen.generate(sets["mixed"][:2], stop=False)
    gen.generate(sets["mixed"][:2])
    for name, asked in sets.items():
        runs = {}
        for mode in ("full", "early"):
            before = gen.positions  # rows actually decoded at each step, summed
            common.cuda_sync(device)
            t = time.perf_counter()
            answers, stopped = gen.generate_stopped(asked, stop=mode == "early")
            common.cuda_sync(device)
            runs[mode] = (time.perf_counter() - t, gen.positions - before, answers, stopped)
        (tf, pf, af, _), (te, pe, ae, se) = runs["full"], runs["early"]
        vf, ve = judge.judge(asked, af), judge.judge(asked, ae)
        rows.append({
            "prompts": name, "n": len(asked), "refused": 1 - sum(vf) / len(vf),
            "cut": sum(se) / len(se), "full_s": tf, "early_s": te,
            "full_answers_per_s": len(asked) / tf, "early_answers_per_s": len(asked) / te,
            "full_positions": pf, "early_positions": pe,
            "agreement": sum(x == y for x, y in zip(vf, ve)) / len(vf),
        })  # fmt: skip
    return rows


def vllm_check(model, tok, names, dirs, coords, asked, args) -> dict:
    """Weight push + prefix-cache reset per point, and greedy agreement with HF."""
    from landscape.generate.hf import HFGenerator
    from landscape.generate.vllm import VllmGenerator
    from landscape.perturb import perturbed

    kw = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    t = time.perf_counter()
    vg = VllmGenerator(model, tok, **kw)
    start_s = time.perf_counter() - t
    hf = HFGenerator(model, tok, **kw)
    sync, same, total = [], 0, 0
    for a, b in [(0.0, 0.0), *coords[:2]]:
        with perturbed(model, {dirs[0]: a, dirs[1]: b}):
            t = time.perf_counter()
            vg.sync()
            sync.append(time.perf_counter() - t)
            got, want = vg.generate(asked), hf.generate(asked)
        same += sum(x == y for x, y in zip(got, want))
        total += len(asked)
    vg.sync()
    vg.close()
    return {"engine_start_s": start_s, "sync_ms": 1000 * common.mean(sync[1:]),
            "greedy_agreement": same / total}  # fmt: skip


def tp_check(model, tok, dirs, coords, asked, args) -> dict | str:
    """Per point at each tensor parallel size: set_point on every rank + prefix-cache reset
    (the directions loaded once into the workers); greedy agreement with HF at one point."""
    import tempfile

    import torch

    from landscape.generate.hf import HFGenerator
    from landscape.generate.vllm_tp import VllmTPGenerator
    from landscape.perturb import perturbed

    cfg = model.config
    kv = cfg.num_key_value_heads or cfg.num_attention_heads
    if args.tp_cpu:  # vLLM's CPU backend: TP 1 and 2, each route (CPU linears unpacked or not)
        runs = [(n, unpack) for n in (1, 2) for unpack in (True, False)]
    else:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus < 2:
            return f"skipped: {gpus} GPU visible (tensor parallelism needs 2 or more)"
        ok = [n for n in TP_SIZES if n <= gpus and cfg.num_attention_heads % n == kv % n == 0]
        runs = [(n, False) for n in ok]
    kw = {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}
    rows = []
    with tempfile.TemporaryDirectory(prefix="landscape-tp-") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        paths = [d.save(f"{tmp}/d{i}.safetensors") for i, d in enumerate(dirs)]
        with perturbed(model, dict(zip(dirs, coords[0]))):
            want = HFGenerator(model, tok, **kw).generate(asked)
        for n, unpack in runs:
            t = time.perf_counter()
            g = VllmTPGenerator(tmp, tok, paths, tensor_parallel_size=n, dtype="bfloat16",
                                unpack=unpack, **kw)  # fmt: skip
            start_s, times = time.perf_counter() - t, []
            for c in [(0.0, 0.0), *coords]:  # the first one warms up
                t = time.perf_counter()
                g.set_point(list(c))
                times.append(time.perf_counter() - t)
            g.set_point(list(coords[0]))
            got = g.generate(asked)
            rows.append({"tp": n, "route": g.route, "engine_start_s": start_s,
                         "set_ms": 1000 * common.mean(times[1:]),
                         "greedy_agreement": sum(x == y for x, y in zip(got, want)) / len(want)})  # fmt: skip
            g.close()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return {"rows": rows}


def run(args) -> dict:
    import torch

    from landscape import directions as D
    from landscape import scope
    from landscape.generate.hf import HFGenerator
    from landscape.judges.base import stop_strings
    from landscape.judges.keyword import KeywordJudge
    from landscape.perturb import generation_bytes

    device, dtype = torch.device(args.device), torch.bfloat16
    shape = SHAPE_TINY if args.tiny else SHAPE_7B
    t_all = time.perf_counter()
    tok, words = make_tokenizer(shape["vocab"])
    model = make_model(tok, shape, args.layers, device, dtype)
    sets = {"refusing": prompts(words, args.batch_size, args.batch_size),
            "mixed": prompts(words, args.batch_size, args.batch_size // 2)}  # fmt: skip
    mixed = sets["mixed"]
    plant(
        model,
        tok,
        [p for p in mixed if p.endswith(TRIGGER)],
        [p for p in mixed if not p.endswith(TRIGGER)],
    )
    names = scope.select(model, "blocks")
    t = time.perf_counter()
    dirs = [D.random(model, names, seed=s).normalized("layer", model) for s in (1, 2)]
    dirs_s = time.perf_counter() - t
    coords = [(0.02 * (i + 1), -0.01 * (i + 1)) for i in range(args.points)]
    reserve = generation_bytes(model, args.batch_size, args.max_new_tokens + 256)
    judge = KeywordJudge()
    gen = HFGenerator(model, tok, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                      stop_at=stop_strings([judge]))  # fmt: skip
    res = {"shape": {**shape, "layers": args.layers, "dtype": "bfloat16"}, "device": str(device),
           "params": sum(p.numel() for p in model.parameters()),
           "perturbed_params": sum(p.numel() for n, p in model.named_parameters() if n in names),
           "directions_s": dirs_s, "placements": [], "vllm": None}  # fmt: skip
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    for placement in PLACEMENTS:
        row = perturb_times(model, names, dirs, coords, placement, reserve)
        theta0, held, plan = row.pop("held")
        if placement == "auto":  # generation beside what the plan keeps, as in a run
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            res["generation"] = generation(gen, tok, sets, judge)
            kept = plan["theta0_bytes"] * (plan["theta0"] == "none") + plan[
                "direction_bytes"
            ] * sum(w == "none" for w in plan["directions"])
            res["memory"] = {
                "estimate_bytes": weights + kept + reserve,
                "peak_bytes": torch.cuda.max_memory_allocated(device)
                if device.type == "cuda" else None,
                "plan": {k: v for k, v in plan.items() if k != "offload"},
            }  # fmt: skip
        res["placements"].append(row)
        del theta0, held
        if device.type == "cuda":
            torch.cuda.empty_cache()
    try:
        import vllm  # noqa: F401
    except ImportError:
        res["vllm"] = "not installed"
    else:
        try:
            res["vllm"] = vllm_check(model, tok, names, dirs, coords, sets["mixed"], args)
        except Exception as e:  # a check: say what failed and keep the rest of the table
            res["vllm"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    try:
        import vllm  # noqa: F401
    except ImportError:
        res["tp"] = "vLLM not installed"
    else:
        try:
            res["tp"] = tp_check(model, tok, dirs, coords, sets["mixed"], args)
        except Exception as e:  # a check: say what failed and keep the rest of the table
            res["tp"] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    res["wall_s"] = time.perf_counter() - t_all
    return res


# --- report ------------------------------------------------------------------------------


def report(res: dict) -> str:
    r = res["result"]
    s = r["shape"]
    lines = [
        *common.head_lines("GPU check", res),
        f"- random-weight Llama: hidden {s['hidden']}, intermediate {s['intermediate']}, "
        f"{s['heads']} heads, {s['layers']} layers, vocabulary {s['vocab']}, {s['dtype']} on "
        f"{r['device']}; {r['params'] / 1e6:.1f}M parameters, {r['perturbed_params'] / 1e6:.1f}M "
        f"perturbed (two random directions, {r['directions_s']:.0f} s to build); whole check "
        f"{r['wall_s']:.0f} s",
        "",
        "| check | result |",
        "|---|---|",
    ]
    for p in r["placements"]:
        where = f"θ0 {p['theta0']}, directions {' '.join(p['directions'])}"
        lines.append(
            f"| perturb + restore, --offload {p['placement']} ({where}) | "
            f"{p['perturb_ms']:.1f} + {p['restore_ms']:.1f} ms per point; exact after an error: "
            f"{'✓' if p['exact_after_error'] else '✗'} |"
        )
    for g in r["generation"]:
        lines.append(
            f"| HF generation, {g['n']} prompts × {res['args']['max_new_tokens']} tokens, "
            f"{g['prompts']} ({100 * g['refused']:.0f}% refuse, {100 * g['cut']:.0f}% cut) | "
            f"full {g['full_answers_per_s']:.1f} answers/s ({g['full_positions']} positions), "
            f"early stop {g['early_answers_per_s']:.1f} answers/s ({g['early_positions']} "
            f"positions): {g['full_s'] / g['early_s']:.2f}×; verdicts equal "
            f"{100 * g['agreement']:.0f}% |"
        )
    m = r["memory"]
    peak = "– (no GPU)" if m["peak_bytes"] is None else f"{m['peak_bytes'] / 2**30:.2f} GiB"
    ratio = "" if m["peak_bytes"] is None else f" ({m['peak_bytes'] / m['estimate_bytes']:.2f}×)"
    lines.append(
        f"| peak GPU memory during generation vs the memory plan | {peak} vs estimate "
        f"{m['estimate_bytes'] / 2**30:.2f} GiB{ratio} |"
    )
    v = r["vllm"]
    if isinstance(v, dict):
        lines.append(
            f"| vLLM: weight push + prefix-cache reset | {v['sync_ms']:.0f} ms per point "
            f"(engine start {v['engine_start_s']:.0f} s); greedy answers equal to HF: "
            f"{100 * v['greedy_agreement']:.1f}% |"
        )
    else:
        lines.append(f"| vLLM | {v} |")
    tp = r.get("tp")
    push = f"{v['sync_ms']:.0f} ms" if isinstance(v, dict) else "–"
    if isinstance(tp, dict):
        for row in tp["rows"]:
            lines.append(
                f"| vLLM TP {row['tp']}: set point + prefix-cache reset ({row['route']}) | "
                f"{row['set_ms']:.1f} ms per point against sync()'s push {push} (engine start "
                f"{row['engine_start_s']:.0f} s); greedy answers equal to HF: "
                f"{100 * row['greedy_agreement']:.1f}% |"
            )
    else:
        lines.append(f"| vLLM tensor parallel | {tp} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --tiny)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes, batch 8 × 16 new tokens")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--points", type=int, default=5, help="points timed per placement")
    p.add_argument("--tp-cpu", action="store_true",
                   help="the tensor parallel section on vLLM's CPU backend at TP 1 and 2 (both routes)")  # fmt: skip
    p.add_argument("--out", type=Path, default=common.RESULTS / "gpu.md")
    args = p.parse_args(argv)
    if args.layers < 1 or args.points < 1:
        p.error("--layers and --points must be at least 1")
    import torch

    if args.device != "cpu" and not torch.cuda.is_available():
        print("error: no CUDA device here: run it on a GPU machine, or pass --device cpu "
              "(with --tiny for tiny shapes)", file=sys.stderr)  # fmt: skip
        return 2
    args.batch_size, args.max_new_tokens = (8, 16) if args.tiny else (64, 128)
    res = common.start("bench/gpu.py", argv)
    res["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    res["result"] = run(args)
    common.write_report(args.out, report(res), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
