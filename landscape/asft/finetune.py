"""One fine-tuning run of a method (landscape.asft.methods), and its evaluation (HS and FA).

The run reads its data, loads the judges and the aligned model (Lisa-base: then the base
model), builds the direction the method anchors to, trains with the one loop in
`landscape.train` (AsFT passes it a penalty, Lisa a hook and its proximal term, BEA its
triggered refusals), takes the method's post-hoc step, saves the adapter (or model) and
evaluates it (BEA: with its trigger as the system prompt).
A killed run resumes; a finished one is returned as it is.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from landscape.asft.config import AsftConfig, check_run_folder
from landscape.asft.data import Example, Task, load_pairs, load_task, poisoned_mix
from landscape.asft.evaluate import evaluate, load_judges
from landscape.asft.lisa import lisa_hook
from landscape.asft.methods import METHODS, Method, anchor_direction, get_method, target_names
from landscape.asft.snapshots import Snapshots
from landscape.asft.update import LazyUpdate, update_report
from landscape.directions import model_paths
from landscape.io import check_writable, folder_lock, read_json, write_json
from landscape.models import load_model
from landscape.prompts import load_prompts
from landscape.train import train
from landscape.world import DEFAULT

log = logging.getLogger(__name__)

__all__ = ["METHODS", "AsftConfig", "evaluate", "finetune", "training_data"]


def training_data(cfg: AsftConfig) -> tuple[Task, list[Example] | None, list[Example] | None]:
    """The task and the harmful and safety pools (None: the default world's), all read and
    checked before any work starts."""
    task = load_task(cfg.task, cfg.seed)
    harmful = (
        load_pairs(cfg.harmful_data, safe=False, flag="--harmful-data")
        if cfg.harmful_data
        else None
    )
    safety = (
        load_pairs(cfg.safety_data, safe=True, flag="--safety-data") if cfg.safety_data else None
    )
    return task, harmful, safety


def _trainable(cfg: AsftConfig, model, names: list[str]):
    """(the model to train, θ0 of the trained weights for full fine-tuning or None): the
    named weights alone made trainable, or the model wrapped in a LoRA adapter over them."""
    if cfg.full:
        theta0 = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)
        return model, theta0
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(cfg.seed)  # the adapter's initialisation
    return get_peft_model(model, lora), None


def _penalty(cfg: AsftConfig, method: Method, trained, theta0, direction):
    """The method's penalty on the trained model, or None."""
    if method.penalty is None:
        return None
    from landscape.asft.penalty import AsftPenalty

    variant = method.penalty(cfg.variant)
    log.info(
        "λ = %g on the toolkit's scale (ΔW with s = %g), %g on the released code's",
        cfg.lam_toolkit,
        cfg.scaling,
        cfg.lam_released,
    )
    if cfg.full:
        return AsftPenalty.for_full(trained, theta0, direction, variant, cfg.lam_toolkit)
    return AsftPenalty(trained, direction, variant, cfg.lam_toolkit)


def _report_direction(cfg: AsftConfig, method: Method, model, names, direction):
    """The direction the update is measured against, and the variant whose maths measures
    it: the method's own anchor and penalty, else (SFT, SafeInstr, Safe LoRA) the aligned
    direction with --variant, so that every row says what AsFT would have penalised; None
    when no base model gives the aligned direction."""
    variant = method.penalty(cfg.variant) if method.penalty else cfg.variant
    if direction is not None:
        return direction, variant
    if not cfg.on_world and cfg.base is None:
        return None, None
    return anchor_direction("aligned", cfg, model, names), variant


def _head_mean(values: list[float], n: int = 20) -> float:
    head = values[:n]
    return sum(head) / max(1, len(head))


def _data_counts(cfg: AsftConfig, method: Method, examples: list[Example], hook=None) -> dict:
    n_harm, n_safe = int(cfg.p * cfg.n), int(cfg.safety_mix * cfg.n)
    out = {
        "task": len(examples) - n_harm - n_safe,
        "harmful": n_harm,
        "safety": n_safe,
        "harmful_source": (cfg.harmful_data or DEFAULT) if n_harm else None,
        "safety_source": (cfg.safety_data or DEFAULT)
        if method.mixes_refusals or method.alternates
        else None,
    }
    if hook is not None:  # Lisa's alignment data, beside the mix rather than in it
        out["alignment"] = len(hook.alignment)
    return out


def _bea(cfg: AsftConfig, tokenizer, task: Task, harmful, safety) -> tuple[list, AsftConfig, dict]:
    """BEA's training data (SafeInstr's draw, the refusals carrying the trigger in their
    system turn), the evaluation's config (that system turn on every prompt) and its record."""
    from landscape.asft.bea import bea_setup, eval_config, triggered, with_trigger
    from landscape.asft.data import refusal_pool

    trigger, turn = bea_setup(cfg, tokenizer)
    pool = safety if safety is not None else refusal_pool(cfg.seed)
    # The same seeded draw as SafeInstr's: rng.sample depends on the pools' sizes alone.
    examples = poisoned_mix(
        task,
        cfg.n,
        cfg.p,
        cfg.seed,
        safety_share=cfg.safety_mix,
        harmful=harmful,
        refusals=with_trigger(pool, turn),
    )
    n = triggered(examples, turn)
    record = {"trigger": trigger, "tokens": cfg.bea_trigger_tokens, "system_turn": turn}
    return examples, eval_config(cfg, turn), {**record, "triggered_examples": n}


def _tail_mean(values: list[float], n: int = 20) -> float:
    tail = values[-n:]
    return sum(tail) / max(1, len(tail))


def finetune(
    cfg: AsftConfig, out: str | Path, judges: list | Callable[[], list] | None = None
) -> dict:
    """Fine-tune the aligned model with `cfg.method` into `out` (adapter or full model,
    `config.json`, `result.json` with HS/FA and diagnostics, `answers.jsonl`); resumes a
    killed run. `judges`: the judges of `cfg.judge`, or a function that gives them (default:
    loaded here); they are loaded before training, so that a bad judge fails before hours of
    training rather than after."""
    cfg.validate()
    method = get_method(cfg.method)
    out = check_writable(out)
    result_path = out / "result.json"
    config = check_run_folder(cfg, out)
    if (out / "config.json").exists() and result_path.exists():
        return read_json(result_path)
    task, harmful, safety = training_data(cfg)
    load_prompts(cfg.eval_prompts)  # read now: a bad file must not wait for the training
    examples = poisoned_mix(
        task, cfg.n, cfg.p, cfg.seed, safety_share=cfg.safety_mix, harmful=harmful, refusals=safety
    )
    if cfg.world_data_on_real_pair():
        log.warning(
            "a real model pair with the toy task or toy prompts: pass --task and --eval-prompts"
        )
    judges = load_judges(cfg) if judges is None else judges() if callable(judges) else judges
    base_path, aligned_path = model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    model, tokenizer = load_model(aligned_path, dtype=cfg.dtype, device=cfg.device)
    names = target_names(model, cfg.target_modules)
    direction = anchor_direction(method.anchor, cfg, model, names) if method.anchor else None
    # Built before LoRA wraps the model (which renames its weights), from the aligned model.
    against, variant = _report_direction(cfg, method, model, names, direction)
    if method.start == "base":  # Lisa-base: the pair's base model is the one fine-tuned
        del model
        model, tokenizer = load_model(base_path, dtype=cfg.dtype, device=cfg.device)
    eval_cfg, extra = cfg, {}
    if method.trigger:
        examples, eval_cfg, extra["bea"] = _bea(cfg, tokenizer, task, harmful, safety)
    hook = lisa_hook(cfg, safety) if method.alternates else None

    with folder_lock(out):  # one writer per run folder, held to the end
        write_json(out / "config.json", config)
        t0 = time.perf_counter()
        snaps = Snapshots(out, cfg.save_every, cfg.full) if cfg.save_every else None
        if snaps is not None:  # the weights it starts from, before LoRA wraps the model
            start = base_path if method.start == "base" else aligned_path
            snaps.start(model, start, method.start, names)
        trained, theta0 = _trainable(cfg, model, names)
        history = train(
            trained,
            tokenizer,
            examples,
            cfg.train_config(),
            penalty=hook.proximal if hook else _penalty(cfg, method, trained, theta0, direction),
            checkpoint=out / "checkpoint",
            hook=hook,
            snapshot=snaps.hook(trained, theta0) if snaps else None,
            snapshot_every=cfg.save_every or 0,
        )
        if method.post_hoc:
            extra[method.name] = method.post_hoc(trained, direction, cfg)
            if snaps is not None:  # the state the run ends in, after its post-hoc step
                snaps.after(method.name)
        if hook is not None:
            extra["lisa"] = {"start": method.start, **hook.report()}
        seconds = time.perf_counter() - t0
        update = update_report(LazyUpdate(trained, names, theta0), against, variant)
        if cfg.full:
            trained.save_pretrained(out / "model")
            tokenizer.save_pretrained(out / "model")
        else:
            trained.save_pretrained(out / "adapter")
        result = {
            "method": cfg.method,
            "p": cfg.p,
            "lam": cfg.lam,
            "lam_scale": cfg.lam_scale,
            "lam_toolkit": cfg.lam_toolkit,
            "lam_released": cfg.lam_released,
            "variant": cfg.variant,
            "anchor": cfg.anchor,
            **evaluate(trained, tokenizer, task, eval_cfg, judges, out / "answers.jsonl"),
            "train_seconds": seconds,
            "data": _data_counts(cfg, method, examples, hook),
            "initial_loss": _head_mean(history["loss"]),
            "final_loss": _tail_mean(history["loss"]),
            "final_penalty": _tail_mean(history["penalty"]),
            "update": update,
            **extra,
        }
        write_json(result_path, result)
        shutil.rmtree(
            out / "checkpoint", ignore_errors=True
        )  # only needed to resume an unfinished run
    return result
