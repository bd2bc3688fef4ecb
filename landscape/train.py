"""The one compact fine-tuning loop.

It pre-trains the toy base, aligns it, makes harmful and benign directions by fine-tuning the
aligned model, and (with a `penalty`) runs AsFT. Loss is on the response tokens only.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from landscape.prompts import render_chat

log = logging.getLogger(__name__)

Example = tuple[str, str]  # (user prompt, assistant response)


@dataclass
class TrainConfig:
    epochs: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: float = 0.05  # share of optimizer steps
    schedule: str = "cosine"  # cosine | constant
    max_len: int = 256
    max_grad_norm: float = 1.0
    seed: int = 0
    desc: str = "train"


def encode(
    tokenizer, examples: Sequence[Example], max_len: int
) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels; prompt tokens get label -100 so only the response is learned."""
    out = []
    for prompt, response in examples:
        p = tokenizer(render_chat(tokenizer, prompt), add_special_tokens=False).input_ids
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


def _lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def train(
    model: torch.nn.Module,
    tokenizer,
    examples: Sequence[Example],
    cfg: TrainConfig,
    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
) -> dict:
    """Train `model` in place on `examples`; returns the loss history.

    `penalty(model)` is added to the task loss at every micro-step; both are divided by
    `grad_accum`, so the penalty keeps its weight whatever the accumulation.
    """
    device = next(model.parameters()).device
    data = encode(tokenizer, examples, cfg.max_len)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    micro_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total_micro = max(1, round(cfg.epochs * micro_per_epoch))
    total_steps = math.ceil(total_micro / cfg.grad_accum)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total_steps, cfg))
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    log.info(
        "training %s: %d examples, %d steps, %s", cfg.desc, len(data), total_steps, asdict(cfg)
    )

    model.train()
    history = {"loss": [], "penalty": []}
    order: list[int] = []
    bar = tqdm(range(total_micro), desc=cfg.desc, leave=False)
    for micro in bar:
        if not order:
            order = list(range(len(data)))
            rng.shuffle(order)
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        batch = _collate([data[i] for i in idx], tokenizer.pad_token_id, device)
        task = model(**batch).loss
        pen = penalty(model) if penalty is not None else torch.zeros((), device=device)
        ((task + pen) / cfg.grad_accum).backward()
        history["loss"].append(task.item())
        history["penalty"].append(pen.item())
        if (micro + 1) % cfg.grad_accum == 0 or micro + 1 == total_micro:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        if micro % 10 == 0:
            bar.set_postfix(loss=f"{task.item():.3f}", pen=f"{pen.item():.3g}")
    model.eval()
    return history
