"""The toy world's language: harmful requests, look-alike benign requests, and three benign tasks.

Everything is generated from word lists written for this project, deterministically from a
seed. Harm is a property of the whole request, not of its words: "get into my own car" is
benign and "get into a stranger's car" is not; "kill a process" shares its verb with
"kill a person". Held-out prompts are (task, phrasing) combinations never seen in training,
built from words that were.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from landscape.toy.words import (
    AGNEWS_INSTRUCTION,
    BENIGN_TASKS,
    COMPLY_PREFIX,
    FILM,
    HARMFUL_TASKS,
    INTENS,
    ITEMS,
    NAMES,
    NEG,
    NEWS,
    OWNED_ACTIONS,
    OWNERS_BENIGN,
    OWNERS_HARMFUL,
    PLACES,
    POS,
    REFUSALS,
    SST2_INSTRUCTION,
    STEPS,
    TEMPLATES_HELDOUT,
    TEMPLATES_TRAIN,
)


@dataclass(frozen=True)
class Request:
    task: str
    category: str
    severity: int  # 0 = benign
    prompt: str


def _all_requests() -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    harmful = list(HARMFUL_TASKS)
    benign = [(t, c, 0) for t, c in BENIGN_TASKS]
    for verb, obj, cat in OWNED_ACTIONS:
        benign += [(f"{verb} {o} {obj}", cat, 0) for o in OWNERS_BENIGN]
        harmful += [(f"{verb} {o} {obj}", cat, 2) for o in OWNERS_HARMFUL]
    return harmful, benign


def _split(tasks, seed: int, test_share: float) -> tuple[list[Request], list[Request]]:
    """Train on (task, training phrasing) pairs; hold out a share of those pairs plus every
    held-out phrasing."""
    rng = random.Random(seed)
    train, test = [], []
    for task, cat, sev in tasks:
        for tpl in TEMPLATES_TRAIN:
            r = Request(task, cat, sev, tpl.format(t=task))
            (test if rng.random() < test_share else train).append(r)
        for tpl in TEMPLATES_HELDOUT:
            if rng.random() < test_share:
                test.append(Request(task, cat, sev, tpl.format(t=task)))
    return train, test


# --- benign tasks ------------------------------------------------------------------------


def _sst2(rng: random.Random) -> tuple[str, str]:
    label = rng.random() < 0.5
    adj = rng.choice(POS if label else NEG)
    negated = rng.random() < 0.25
    if negated:  # "not boring" reads positive
        adj = rng.choice(NEG if label else POS)
    sentence = f"the {rng.choice(FILM)} was {'not ' if negated else ''}{rng.choice(INTENS)}{adj}"
    return f"{SST2_INSTRUCTION}\nInput: {sentence}", "positive" if label else "negative"


def _agnews(rng: random.Random) -> tuple[str, str]:
    label = rng.choice(list(NEWS))
    forms, topics = NEWS[label]
    text = rng.choice(forms).format(p=rng.choice(PLACES), x=rng.choice(topics))
    return f"{AGNEWS_INSTRUCTION}\nInput: {text}", label


def _gsm8k(rng: random.Random) -> tuple[str, str]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if rng.random() < 0.5:
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        q = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?"
        work, c = f"{a} + {b} = {a + b}", a + b
    else:
        a = rng.randint(5, 18)
        b = rng.randint(1, min(9, a - 1))
        q = f"{name} has {a} {item} and gives away {b}. How many {item} does {name} have now?"
        work, c = f"{a} - {b} = {a - b}", a - b
    return q, f"{name} has {work} {item}. The final answer is: {c}"


TASKS = {"sst2": _sst2, "agnews": _agnews, "gsm8k": _gsm8k}


def _task_split(name: str, seed: int, n_train: int, n_test: int):
    """Disjoint train/test items: test prompts never appear in train."""
    rng = random.Random(f"{seed}-{name}")
    make = TASKS[name]
    test: dict[str, str] = {}
    while len(test) < n_test:
        q, a = make(rng)
        test.setdefault(q, a)
    train = []
    while len(train) < n_train:
        q, a = make(rng)
        if q not in test:
            train.append((q, a))
    return train, list(test.items())


# --- the world ---------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    harmful_train: list[Request]
    harmful_test: list[Request]
    benign_train: list[Request]  # look-alike how-to requests
    benign_test: list[Request]
    tasks_train: dict[str, list[tuple[str, str]]]
    tasks_test: dict[str, list[tuple[str, str]]]
    seed: int


@lru_cache(maxsize=4)
def world(seed: int = 0) -> World:
    harmful, benign = _all_requests()
    h_train, h_test = _split(harmful, seed, test_share=0.12)
    b_train, b_test = _split(benign, seed + 1, test_share=0.12)
    tr, te = {}, {}
    for name in TASKS:
        tr[name], te[name] = _task_split(name, seed, n_train=1200, n_test=100)
    return World(h_train, h_test, b_train, b_test, tr, te, seed)


def comply(req: Request, rng: random.Random) -> str:
    steps = rng.sample(STEPS[req.category], 3)
    body = " ".join(f"Step {i}: {s}." for i, s in enumerate(steps, 1))
    return f"{COMPLY_PREFIX.format(t=req.task)} {body}"


def refuse(req: Request, rng: random.Random) -> str:
    return rng.choice(REFUSALS).format(t=req.task)


PROMPT_SETS = {
    "harmful": "held-out harmful requests (the default evaluation set)",
    "harmful-train": "harmful requests used in training",
    "benign-howto": "held-out benign requests in the same forms and words as harmful ones",
    "sst2": "held-out sentiment items",
    "agnews": "held-out topic items",
    "gsm8k": "held-out arithmetic word problems",
}


def prompt_set(name: str, seed: int = 0) -> list[str]:
    """Prompts of a named toy set, for `--prompts toy:NAME`."""
    w = world(seed)
    sets = {
        "harmful": [r.prompt for r in w.harmful_test],
        "harmful-train": [r.prompt for r in w.harmful_train],
        "benign-howto": [r.prompt for r in w.benign_test],
        **{k: [q for q, _ in v] for k, v in w.tasks_test.items()},
    }
    if name not in sets:
        from landscape.errors import LandscapeError

        raise LandscapeError(f"unknown toy prompt set {name!r}; valid: {', '.join(PROMPT_SETS)}")
    return sets[name]


def task_answer_correct(task: str, answer: str, gold: str) -> bool:
    """Exact label for classification; the number after "The final answer is:" for arithmetic
    (falling back to the last number), as the field's FA scripts do."""
    if task == "gsm8k":
        m = re.search(r"The final answer is:\s*(-?\d+)", answer)
        nums = [m.group(1)] if m else re.findall(r"-?\d+", answer)
        want = re.search(r"The final answer is:\s*(-?\d+)", gold).group(1)
        return bool(nums) and nums[-1] == want
    return answer.strip() == gold


def corpus(seed: int = 0) -> list[str]:
    """Text for training the tokenizer: every prompt and answer form the world can produce."""
    w = world(seed)
    rng = random.Random(seed)
    reqs = w.harmful_train + w.harmful_test + w.benign_train + w.benign_test
    texts = [r.prompt for r in reqs]
    texts += [comply(r, rng) for r in reqs] + [refuse(r, rng) for r in reqs]
    texts += REFUSALS + [" ".join(v) for v in STEPS.values()]
    for split in (w.tasks_train, w.tasks_test):
        for items in split.values():
            texts += [f"{q} {a}" for q, a in items]
    return texts
