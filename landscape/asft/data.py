"""Fine-tuning data: a benign task mixed with a share p of harmful samples, as in the field's
harmful-fine-tuning protocol (⌊p·n⌋ harmful request → compliant answer, ⌊(1−p)·n⌋ benign)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.toy import data as toy

Example = tuple[str, str]


@dataclass(frozen=True)
class Task:
    """A benign task: training items, test items and how an answer is scored."""

    name: str
    train: list[Example]
    test: list[Example]

    def correct(self, answer: str, gold: str) -> bool:
        kind = "gsm8k" if "The final answer is:" in gold else "label"
        return toy.task_answer_correct(kind, answer, gold)


def _read_jsonl(path: Path) -> list[Example]:
    """Records {instruction, input, output}: the prompt is the instruction, then the input."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise LandscapeError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
        missing = [k for k in ("instruction", "output") if not isinstance(rec.get(k), str)]
        if missing:
            raise LandscapeError(f"{path}: line {i} lacks the field(s) {', '.join(missing)}")
        prompt = rec["instruction"] + (f"\nInput: {rec['input']}" if rec.get("input") else "")
        out.append((prompt, rec["output"]))
    if not out:
        raise LandscapeError(f"{path}: no records")
    return out


def load_task(spec: str, seed: int = 0) -> Task:
    """`toy:sst2`, `toy:agnews`, `toy:gsm8k`, or `TRAIN.jsonl[,TEST.jsonl]` (without a test
    file, the last 10% of the training file is held out)."""
    if spec.startswith("toy:"):
        name = spec[4:]
        w = toy.world(seed)
        if name not in w.tasks_train:
            raise LandscapeError(f"unknown toy task {name!r}; valid: {', '.join(w.tasks_train)}")
        return Task(spec, list(w.tasks_train[name]), list(w.tasks_test[name]))
    paths = [Path(p).expanduser() for p in spec.split(",")]
    for p in paths:
        if not p.is_file():
            raise LandscapeError(f"task file does not exist: {p}")
    train = _read_jsonl(paths[0])
    if len(paths) > 1:
        return Task(spec, train, _read_jsonl(paths[1]))
    cut = max(1, len(train) // 10)
    return Task(spec, train[:-cut], train[-cut:])


def harmful_pool(seed: int = 0) -> list[Example]:
    """Harmful requests with compliant answers (the toy world's training requests)."""
    rng = random.Random(seed + 11)
    return [(r.prompt, toy.comply(r, rng)) for r in toy.world(seed).harmful_train]


def refusal_pool(seed: int = 0) -> list[Example]:
    """Harmful requests with refusals: SafeInstr's safety examples."""
    rng = random.Random(seed + 13)
    return [(r.prompt, toy.refuse(r, rng)) for r in toy.world(seed).harmful_train]


def poisoned_mix(task: Task, n: int, p: float, seed: int = 0, safety_share: float = 0.0) -> list[Example]:
    """⌊p·n⌋ harmful samples and ⌊(1−p)·n⌋ task samples (SafeInstr: a further
    ⌊safety_share·n⌋ refusal samples), drawn without replacement with a seed."""
    if not 0.0 <= p <= 1.0:
        raise LandscapeError(f"the poison ratio p must be in [0, 1], got {p}")
    if n < 1:
        raise LandscapeError(f"n must be at least 1, got {n}")
    n_harm, n_task, n_safe = int(p * n), int((1 - p) * n), int(safety_share * n)
    harmful, refusals = harmful_pool(seed), refusal_pool(seed)
    for what, have, want in (("task", len(task.train), n_task), ("harmful", len(harmful), n_harm),
                             ("refusal", len(refusals), n_safe)):
        if want > have:
            raise LandscapeError(f"n={n} asks for {want} {what} samples but only {have} exist")
    rng = random.Random(seed)
    mix = rng.sample(task.train, n_task) + rng.sample(harmful, n_harm) + rng.sample(refusals, n_safe)
    rng.shuffle(mix)
    return mix
