"""Safety-align a causal LM with the project's one training loop, and keep base and aligned
as a pair folder that `--base`/`--aligned` take.

The aligned model learns to refuse the recipe's harmful training requests and to answer its
benign ones as the base model itself answers them (greedy, cached), so that what it knows is
kept rather than taught again. Everything is made inside the pair folder under its lock and
survives a kill: the held-out prompt files first, then the base's saved copy and numbers,
the base's answers (one batch at a time), the training checkpoint, the aligned model and its
numbers; `metrics.json` and the manifest come last and mark the pair as finished.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from landscape.align.config import (
    VERSION,
    AlignConfig,
    check_model,
    default_model,
    identity,
)
from landscape.align.evaluate import eval_harmful, evaluate, format_metrics, targets
from landscape.align.recipe import Recipe, make_recipe, refusal, whole_sentences
from landscape.errors import LandscapeError
from landscape.io import (
    MANIFEST,
    building_folder,
    cache_dir,
    check_writable,
    dumps_line,
    folder_lock,
    manifest_problem,
    read_json,
    read_jsonl,
    record_hash,
    write_json,
    write_jsonl,
    write_manifest,
)

log = logging.getLogger(__name__)

RECIPE = "recipe.json"
METRICS = "metrics.json"
WORK = "work"  # what a killed build resumes from; removed once the pair is finished
GEN_BATCH = 16
SAVE_EVERY = 20  # optimizer steps between training checkpoints


@dataclass(frozen=True)
class AlignedPair:
    root: Path
    base: Path
    aligned: Path
    metrics: Path


def _pair(root: Path) -> AlignedPair:
    return AlignedPair(root, root / "base", root / "aligned", root / METRICS)


def default_out(ident: dict, model: str) -> Path:
    """The cache folder of this recipe on this model: another setting, another folder."""
    stem = Path(model).stem.split(".")[0] or "model"
    return cache_dir() / f"align-{VERSION}-{stem}-{record_hash(ident)}"


def rebuild_command(cfg: AlignConfig, model: str, out: Path) -> str:
    args = ["python", "-m", "landscape.align", "--model", model]
    defaults = AlignConfig()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if (
            f.name != "model"
            and f.metadata.get("cli") is not False
            and value != getattr(defaults, f.name)
        ):
            args += ["--" + f.name.replace("_", "-"), str(value)]
    return shlex.join([*args, "--out", str(out)])


def _finished(root: Path) -> bool:
    """A finished pair of this recipe (the check is by size: hashing a GB on every use would
    cost seconds; `--verify` elsewhere checks bytes). A damaged one is an error naming the
    command that rebuilds it."""
    if not (root / METRICS).is_file() or not (root / MANIFEST).is_file():
        return False
    problem = manifest_problem(root, hashes=False)
    if problem is not None:
        rebuild = read_json(root / MANIFEST).get("rebuild") if (root / MANIFEST).is_file() else None
        fix = f"; rebuild it with: {rebuild}" if rebuild else ""
        raise LandscapeError(f"the pair in {root} is damaged ({problem}){fix}")
    return True


def _check_out(root: Path, ident: dict) -> None:
    """The folder holds nothing, or this recipe's build (finished or not)."""
    if root.is_file():
        raise LandscapeError(f"--out {root} is a file, not a folder")
    if not root.is_dir() or not any(p.name != ".lock" for p in root.iterdir()):
        check_writable(root)
        return
    if not (root / RECIPE).is_file():
        raise LandscapeError(f"{root} is not empty and holds no pair: choose another --out")
    held = read_json(root / RECIPE)
    if held != ident:
        diff = sorted(k for k in set(held) | set(ident) if held.get(k) != ident.get(k))
        raise LandscapeError(
            f"{root} holds a different pair (its {', '.join(diff)} differ): choose another --out"
        )


def _save_model(model, tokenizer, folder: Path) -> None:
    with building_folder(folder) as tmp:
        # A GGUF-loaded model keeps its quantizer record, and would not save: the weights are
        # dequantized in memory already, so the record no longer describes them.
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_manifest(tmp)


def _write_prompt_files(root: Path, recipe: Recipe, harmful: list[str]) -> None:
    """The held-out sets as prompt files that grids take (`--prompts PAIR/eval/harmful.jsonl`),
    and the training rows the harmful and benign directions are fine-tuned from."""
    source = dict(recipe.harmful_eval)
    files = {
        "eval/harmful.jsonl": [{"prompt": p, "source": source[p]} for p in harmful],
        "eval/harmful_all.jsonl": [{"prompt": p, "source": s} for p, s in recipe.harmful_eval],
        "eval/lookalike.jsonl": [{"prompt": p} for p in recipe.lookalike_eval],
        "eval/everyday.jsonl": [{"prompt": p} for p in recipe.everyday_eval],
        "eval/capitals.jsonl": [{"prompt": q, "answers": list(a)} for q, a in recipe.capitals_eval],
        "train/harmful.jsonl": [{"prompt": g, "target": t} for g, t in recipe.harmful_train],
    }
    for rel, rows in files.items():
        if not (root / rel).is_file():
            write_jsonl(root / rel, rows)


def _distill(generator, prompts: list[str], path: Path) -> dict[str, str]:
    """The base model's greedy answers to `prompts`, appended to `path` a batch at a time so
    that a killed build keeps the batches it finished."""
    done = {r["prompt"]: r["answer"] for r in read_jsonl(path)}
    write_jsonl(path, [{"prompt": p, "answer": a} for p, a in done.items()])  # drop a torn line
    todo = [p for p in prompts if p not in done]
    with open(path, "a", encoding="utf-8") as f:
        for i in tqdm(range(0, len(todo), GEN_BATCH), desc="base answers", leave=False):
            batch = todo[i : i + GEN_BATCH]
            for p, a in zip(batch, generator.generate(batch)):
                done[p] = a
                f.write(dumps_line({"prompt": p, "answer": a}))
            f.flush()
            os.fsync(f.fileno())
    return {p: done[p] for p in prompts}


def training_examples(
    recipe: Recipe, answers: dict[str, str], judge, cfg: AlignConfig
) -> tuple[list[tuple[str, str]], int]:
    """Refusals for harmful requests; the base's own answers for benign ones, less those that
    hold a refusal string (the aligned model is not taught to refuse a benign request).
    Returns the examples and how many benign answers were left out."""
    rng = random.Random(cfg.seed)
    ex = [(goal, refusal(rng)) for goal, _ in recipe.harmful_train]
    prompts = recipe.benign_train()
    kept_answers = [whole_sentences(answers[p]) for p in prompts]
    keep = judge.judge(prompts, kept_answers)  # "unsafe" = no refusal string: usable
    benign = [(p, a) for p, a, ok in zip(prompts, kept_answers, keep) if ok and a]
    ex += benign * cfg.benign_repeat
    return ex, len(prompts) - len(benign)


def _train(model, tokenizer, examples, cfg: AlignConfig, checkpoint: Path):
    from landscape.train import TrainConfig, train

    tcfg = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup=0.05,
        max_len=cfg.max_len,
        seed=cfg.seed,
        desc="align",
    )
    if not cfg.lora:
        history = train(
            model, tokenizer, examples, tcfg, checkpoint=checkpoint, save_every=SAVE_EVERY
        )
        return model, history
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)  # the adapter's initialisation
    lora = LoraConfig(
        r=cfg.lora, lora_alpha=2 * cfg.lora, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    wrapped = get_peft_model(model, lora)
    history = train(
        wrapped, tokenizer, examples, tcfg, checkpoint=checkpoint, save_every=SAVE_EVERY
    )
    return wrapped.merge_and_unload(), history


def align(cfg: AlignConfig, out: str | Path | None = None) -> AlignedPair:
    """Build (or find) the pair of `cfg` in `out` (default: the cache); returns its folders.
    Bad settings, inputs or an `out` that holds another pair: LandscapeError before anything
    is written."""
    from landscape.generate.hf import HFGenerator
    from landscape.judges.keyword import KeywordJudge
    from landscape.models import load_model

    cfg.check()
    model_src = cfg.model or default_model()
    check_model(model_src)
    recipe = make_recipe(cfg.advbench, cfg.harmbench, cfg.seed, cfg.train_share)
    ident = identity(cfg, model_src)
    root = Path(out).expanduser() if out is not None else default_out(ident, model_src)
    if (root / RECIPE).is_file() and read_json(root / RECIPE) == ident and _finished(root):
        return _pair(root)
    _check_out(root, ident)
    harmful = eval_harmful(recipe, cfg.n_eval, cfg.seed)
    t_all = time.perf_counter()
    with folder_lock(root):
        work = root / WORK
        seconds = read_json(work / "seconds.json") if (work / "seconds.json").is_file() else {}

        def timed(name: str, t0: float) -> None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0
            write_json(work / "seconds.json", seconds)

        if (root / METRICS).is_file():  # killed between the numbers and the manifest
            shutil.rmtree(work, ignore_errors=True)
            write_manifest(root, rebuild=rebuild_command(cfg, model_src, root))
            return _pair(root)
        t0 = time.perf_counter()
        # Loaded before anything is written: a model that does not load leaves no folder.
        model, tokenizer = load_model(model_src, dtype=cfg.dtype)
        if not (root / RECIPE).is_file():
            write_json(root / RECIPE, ident)
        _write_prompt_files(root, recipe, harmful)
        timed("load", t0)
        judge = KeywordJudge()
        gen = HFGenerator(model, tokenizer, batch_size=GEN_BATCH, max_new_tokens=cfg.eval_tokens)
        if not (root / "base").is_dir():
            _save_model(model, tokenizer, root / "base")
        base_eval_path = work / "base_eval.json"
        if not base_eval_path.is_file():
            t0 = time.perf_counter()
            write_json(base_eval_path, evaluate(gen, judge, recipe, harmful))
            timed("evaluate base", t0)
        base_eval = read_json(base_eval_path)
        if not (root / "aligned").is_dir():
            t0 = time.perf_counter()
            distiller = HFGenerator(
                model, tokenizer, batch_size=GEN_BATCH, max_new_tokens=cfg.distill_tokens
            )
            answers = _distill(distiller, recipe.benign_train(), work / "distilled.jsonl")
            timed("base answers", t0)
            examples, dropped = training_examples(recipe, answers, judge, cfg)
            write_json(work / "data.json", {"examples": len(examples), "benign_dropped": dropped})
            n_harm = len(recipe.harmful_train)
            benign = examples[n_harm : n_harm + (len(examples) - n_harm) // cfg.benign_repeat]
            # the benign direction's data: the same requests with the answers trained on
            write_jsonl(
                root / "train" / "benign.jsonl", [{"prompt": p, "response": r} for p, r in benign]
            )
            t0 = time.perf_counter()
            model, history = _train(model, tokenizer, examples, cfg, work / "checkpoint")
            write_json(work / "history.json", history)
            timed("train", t0)
            _save_model(model, tokenizer, root / "aligned")
        else:
            model, tokenizer = load_model(root / "aligned", dtype=cfg.dtype)
        gen = HFGenerator(model, tokenizer, batch_size=GEN_BATCH, max_new_tokens=cfg.eval_tokens)
        t0 = time.perf_counter()
        aligned_eval = evaluate(gen, judge, recipe, harmful, base_eval["benign_answers"])
        timed("evaluate aligned", t0)
        b, a = base_eval["metrics"], aligned_eval["metrics"]
        data = read_json(work / "data.json")
        history = read_json(work / "history.json")
        metrics = {
            "base": b,
            "aligned": a,
            "targets": targets(b, a),
            "seed": cfg.seed,
            "version": VERSION,
            "recipe": recipe.counts(),
            "training": {
                **data,
                "final_loss": sum(history["loss"][-20:]) / len(history["loss"][-20:]),
            },
            "seconds": seconds,
        }
        write_jsonl(root / "eval" / "answers.jsonl", _answer_rows(recipe, base_eval, aligned_eval))
        write_json(root / METRICS, metrics)
        shutil.rmtree(work)
        write_manifest(root, rebuild=rebuild_command(cfg, model_src, root))
    log.info("pair built in %.0f s:\n%s", time.perf_counter() - t_all, format_metrics(metrics))
    return _pair(root)


def _answer_rows(recipe: Recipe, base_eval: dict, aligned_eval: dict) -> list[dict]:
    """Both models' answers to the held-out benign requests, side by side, to read."""
    prompts = {"lookalike": recipe.lookalike_eval, "everyday": recipe.everyday_eval}
    rows = []
    for name, answers in base_eval["benign_answers"].items():
        for p, b, a in zip(prompts[name], answers, aligned_eval["benign_answers"][name]):
            rows.append({"set": name, "prompt": p, "base": b, "aligned": a})
    return rows
