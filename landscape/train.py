"""The one compact fine-tuning loop.

It pre-trains the toy base, aligns it, makes harmful and benign directions by fine-tuning the
aligned model, and (with a `penalty`) runs AsFT. Loss is on the response tokens only.
"""

from __future__ import annotations

import logging
import math
import numbers
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from landscape.errors import LandscapeError
from landscape.io import replacing
from landscape.prompts import render_chat

log = logging.getLogger(__name__)

Example = tuple[str, str]  # (user prompt, assistant response); a third item: its system prompt

# The learning-rate schedules `TrainConfig.schedule` takes (command-line choices elsewhere).
SCHEDULES = ("cosine", "constant", "step")


@dataclass
class TrainConfig:
    epochs: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of optimizer steps; "step" has no warm-up whatever this says
    schedule: str = "cosine"  # one of SCHEDULES: cosine | constant | step
    max_len: int = 256
    max_grad_norm: float | None = 1.0  # 0 or None: no clipping
    seed: int = 0
    desc: str = "train"
    # "step" (the released AsFT code's StepLR): lr times step_gamma once per epoch, i.e.
    # lr * step_gamma ** (optimizer step // optimizer steps per epoch). Added after
    # checkpoints existed: one saved without it resumes when it is at its default.
    step_gamma: float = 0.85


# Fields added after training checkpoints existed, with the value those checkpoints imply.
_LATER = {"step_gamma": 0.85}


def _check(cfg: TrainConfig) -> None:
    """Refuse a config the loop cannot run as meant, before any work."""
    if cfg.schedule not in SCHEDULES:
        raise LandscapeError(
            f"unknown schedule {cfg.schedule!r}: choose one of {', '.join(SCHEDULES)}"
        )
    g = cfg.max_grad_norm
    if g is not None and (not isinstance(g, numbers.Real) or math.isnan(g) or g < 0):
        raise LandscapeError(f"max_grad_norm must be 0 or more (0 or None: no clipping), got {g!r}")
    y = cfg.step_gamma
    if not isinstance(y, numbers.Real) or not (0 < y <= 1):
        raise LandscapeError(f"step_gamma must be in (0, 1], got {y!r}")


def encode(
    tokenizer, examples: Sequence[Example], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels; prompt tokens get label -100 so only the response is learned. An
    example's third item, when it has one, is the system prompt of its chat turn."""
    out = []
    for prompt, response, *system in examples:
        p = tokenizer(render_chat(tokenizer, prompt, *system), add_special_tokens=False).input_ids
        r = tokenizer(response + tokenizer.eos_token, add_special_tokens=False).input_ids
        ids = (p + r)[:max_len]
        labels = ([-100] * len(p) + r)[:max_len]
        out.append((ids, labels))
    return out


def _collate(items, pad_id: int, device) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, (x, y) in enumerate(items):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def _lr_factor(step: int, total: int, cfg: TrainConfig, steps_per_epoch: int = 1) -> float:
    """The learning rate's multiplier at optimizer step `step` (0-based) of `total`."""
    if cfg.schedule == "step":  # no warm-up, as in the released AsFT code
        return cfg.step_gamma ** (step // max(1, steps_per_epoch))
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _window(history: dict, step: int, every: int, grad_accum: int) -> dict:
    """The mean task loss and penalty over the micro-steps since the snapshot before optimizer
    step `step` (one every `every` steps): what the loss was while the weights moved there."""
    lo = ((step - 1) // every) * every * grad_accum
    loss, pen = history["loss"][lo:], history["penalty"][lo:]
    return {
        "task_loss": sum(loss) / len(loss),
        "penalty": sum(pen) / len(pen),
        "micro_steps": len(loss),
    }


class TrainHook(Protocol):
    """A method that changes the loop itself (Lisa's alternation between two data sets): it
    is started once, may swap the batch of every micro-step, and its state is checkpointed
    with the loop's."""

    def start(self, model, tokenizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int):
        """Called once before the first step (and before a checkpoint is restored)."""

    def items(self, step: int, items: list) -> list:
        """The encoded (ids, labels) to train on at optimizer step `step` instead of `items`."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _save_state(path: Path, model, opt, sched, micro, rng, order, history, cfg, hook=None) -> None:
    """Everything needed to continue exactly where training stopped, written atomically."""
    state = {
        "config": asdict(cfg),
        "micro": micro,
        "params": {n: p.detach().cpu() for n, p in _trainable(model).items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "rng": rng.getstate(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "order": order,
        "history": history,
        "hook": hook.state_dict() if hook is not None else None,
    }
    with replacing(path / "state.pt") as tmp:  # a kill mid-save keeps the last whole state
        torch.save(state, tmp)


def _load_state(path: Path, model, opt, sched, rng, cfg, hook=None) -> tuple[int, list[int], dict]:
    state = torch.load(path / "state.pt", weights_only=False)
    if {**_LATER, **state["config"]} != asdict(cfg):
        raise LandscapeError(f"{path} holds a training checkpoint with another config")
    if (state.get("hook") is None) != (hook is None):  # saved before hooks existed: None
        raise LandscapeError(f"{path} holds a training checkpoint of another method")
    params = _trainable(model)
    if set(state["params"]) != set(params):
        raise LandscapeError(f"{path}: checkpoint parameters do not match the model being trained")
    with torch.no_grad():
        for n, t in state["params"].items():
            params[n].copy_(t)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    rng.setstate(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if hook is not None:
        hook.load_state_dict(state["hook"])
    log.info("resuming %s from micro-step %d (%s)", cfg.desc, state["micro"], path)
    return state["micro"], state["order"], state["history"]


def train(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    cfg: TrainConfig,
    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    checkpoint: str | Path | None = None,
    save_every: int = 50,
    hook: TrainHook | None = None,
    snapshot: Callable[[int, dict], None] | None = None,
    snapshot_every: int = 0,
) -> dict:
    """Train `model` in place on `examples`; returns the loss history.

    `penalty(model)` is added to the task loss at every micro-step; both are divided by
    `grad_accum`, so the penalty keeps its weight whatever the accumulation. With
    `checkpoint`, the training state is saved there every `save_every` optimizer steps and a
    later call with the same config continues from it: the result equals an uninterrupted run.
    `hook` (see `TrainHook`) may train some steps on other batches; it is checkpointed too.
    `snapshot(step, stats)` is called after every `snapshot_every`-th optimizer step and
    after the last, with the mean task loss and penalty of the micro-steps since the one
    before (`_window`); it runs before that step's checkpoint is saved, so that a resumed run
    calls it again for every step after its checkpoint and misses none.
    A config the loop cannot run (`_check`) raises LandscapeError before anything is done.
    """
    _check(cfg)
    device = next(model.parameters()).device
    data = encode(tokenizer, examples, cfg.max_len)
    params = list(_trainable(model).values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    micro_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total_micro = max(1, round(cfg.epochs * micro_per_epoch))
    total_steps = math.ceil(total_micro / cfg.grad_accum)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total_steps, cfg, steps_per_epoch)
    )
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    history: dict[str, list[float]] = {"loss": [], "penalty": []}
    order: list[int] = []
    start = 0
    if hook is not None:
        hook.start(model, tokenizer, cfg, total_steps, steps_per_epoch)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and (ckpt / "state.pt").exists():
        start, order, history = _load_state(ckpt, model, opt, sched, rng, cfg, hook)
    log.info(
        "training %s: %d examples, %d steps, %s", cfg.desc, len(data), total_steps, asdict(cfg)
    )

    model.train()
    bar = tqdm(
        range(start, total_micro), desc=cfg.desc, leave=False, initial=start, total=total_micro
    )
    for micro in bar:
        if not order:
            order = list(range(len(data)))
            rng.shuffle(order)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        items = [data[i] for i in idx]
        if hook is not None:  # drawn and then replaced, so that the task order stays SFT's
            items = hook.items(micro // cfg.grad_accum, items)
        batch = _collate(items, tokenizer.pad_token_id, device)
        task = model(**batch).loss
        pen = penalty(model) if penalty is not None else torch.zeros((), device=device)
        ((task + pen) / cfg.grad_accum).backward()
        history["loss"].append(task.item())
        history["penalty"].append(pen.item())
        if (micro + 1) % cfg.grad_accum == 0 or micro + 1 == total_micro:
            if cfg.max_grad_norm:  # 0 or None: no clipping
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step = (micro + 1) // cfg.grad_accum
            if snapshot is not None and snapshot_every:
                done = math.ceil((micro + 1) / cfg.grad_accum)  # a last partial step counts
                if done % snapshot_every == 0 or micro + 1 == total_micro:
                    snapshot(done, _window(history, done, snapshot_every, cfg.grad_accum))
            if (
                ckpt is not None
                and save_every
                and step % save_every == 0
                and micro + 1 < total_micro
            ):
                _save_state(ckpt, model, opt, sched, micro + 1, rng, order, history, cfg, hook)
        if micro % 10 == 0:
            bar.set_postfix(loss=f"{task.item():.3f}", pen=f"{pen.item():.3g}")
    model.eval()
    return history
