"""The toy world's entries in the core's registries: its world (pair, fine-tunes, prompt
sets, tasks, data pools) and its judge. Called through the `landscape.plugins` entry point,
so that the core never imports the toy world."""

from __future__ import annotations

import random
from pathlib import Path

from landscape.errors import LandscapeError


def _pair(seed: int = 0) -> tuple[Path, Path]:
    from landscape.toy.build import toy_pair

    pair = toy_pair(seed)
    return pair.base, pair.aligned


def _finetune(kind: str, seed: int = 0, samples: int | None = None) -> Path:
    from landscape.toy.build import toy_finetune

    if kind not in ("harmful", "benign"):
        raise LandscapeError(f"the toy world fine-tunes harmful or benign, not {kind!r}")
    return toy_finetune(kind, seed, samples)


def _prompt_set(name: str) -> list[str]:
    from landscape.toy.data import prompt_set

    return list(prompt_set(name))


def _task(name: str, seed: int = 0):
    from landscape.toy import data
    from landscape.world import Task

    w = data.world(seed)
    if name not in w.tasks_train:
        raise LandscapeError(f"unknown toy task {name!r}; valid: {', '.join(w.tasks_train)}")
    kind = "gsm8k" if name == "gsm8k" else "label"
    return Task(
        f"toy:{name}",
        list(w.tasks_train[name]),
        list(w.tasks_test[name]),
        lambda answer, gold: data.task_answer_correct(kind, answer, gold),
    )


def _harmful_pool(seed: int = 0) -> list[tuple[str, str]]:
    from landscape.toy import data

    rng = random.Random(seed + 11)
    return [(r.prompt, data.comply(r, rng)) for r in data.world(seed).harmful_train]


def _refusal_pool(seed: int = 0) -> list[tuple[str, str]]:
    from landscape.toy import data

    rng = random.Random(seed + 13)
    return [(r.prompt, data.refuse(r, rng)) for r in data.world(seed).harmful_train]


def register() -> None:
    from landscape.judges import JUDGES
    from landscape.registry import WORLDS
    from landscape.world import World

    JUDGES.register("toy", "landscape.toy.judge:ToyJudge")
    WORLDS.register(
        "toy",
        World(
            name="toy",
            pair=_pair,
            finetune=_finetune,
            prompt_set=_prompt_set,
            task=_task,
            harmful_pool=_harmful_pool,
            refusal_pool=_refusal_pool,
            judges="keyword,toy",
            benign="toy:gsm8k",  # worked answers in sentences, the toy language's longest
        ),
    )
