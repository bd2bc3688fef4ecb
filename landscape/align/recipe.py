"""The alignment recipe's data: which requests are trained on, which are held out, and the
refusals and answers the aligned model learns.

Harmful requests come from the user's AdvBench file (`goal`, `target`), split by groups of
near-duplicates (AdvBench repeats many requests with a word changed), so that no held-out
request has a near-copy in training; HarmBench's standard test behaviours, when given, join
the held-out side, less any that nearly copy a training request. Benign requests are the
project's own (`texts.py`), split the same seeded way.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from landscape.align import texts
from landscape.errors import LandscapeError
from landscape.prompts import find_column, read_rows

NEAR_DUPLICATE = 0.5  # word-set Jaccard at or above which two requests count as one
_STOP = frozenset(
    "a an the and or of to for in on on how with that can from into your my me i you is are "
    "be by as at it this which who what write create develop provide give make explain".split()
)


@dataclass(frozen=True)
class Recipe:
    """Every prompt set of one build. Harmful training rows keep AdvBench's `target` (the
    compliant opening that the harmful direction is fine-tuned on)."""

    harmful_train: tuple[tuple[str, str], ...]  # (goal, target)
    harmful_eval: tuple[tuple[str, str], ...]  # (prompt, source: advbench | harmbench)
    lookalike_train: tuple[str, ...]
    lookalike_eval: tuple[str, ...]
    everyday_train: tuple[str, ...]
    everyday_eval: tuple[str, ...]
    capitals_train: tuple[tuple[str, tuple[str, ...]], ...]  # (question, accepted answers)
    capitals_eval: tuple[tuple[str, tuple[str, ...]], ...]

    def benign_train(self) -> list[str]:
        return [*self.lookalike_train, *self.everyday_train, *(q for q, _ in self.capitals_train)]

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def near_duplicate_groups(prompts: list[str]) -> list[list[int]]:
    """Indices of `prompts` grouped so that any two at NEAR_DUPLICATE or more (directly or
    through a chain) share a group; groups in order of their first member."""
    sets = [words(p) for p in prompts]
    parent = list(range(len(prompts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(prompts)):
        for j in range(i + 1, len(prompts)):
            if jaccard(sets[i], sets[j]) >= NEAR_DUPLICATE:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(prompts)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _column(rows: list, path: Path, wanted: str, what: str) -> str:
    if not rows or not isinstance(rows[0], dict):
        raise LandscapeError(f"{path}: expected a table with a {wanted!r} column")
    return find_column(list(rows[0]), str(path), (wanted,), what, hint="")


def read_advbench(path: str | Path) -> list[tuple[str, str]]:
    """(goal, target) rows of an AdvBench harmful_behaviors file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LandscapeError(
            f"AdvBench file not found: {path} (pass --advbench PATH/harmful_behaviors.csv)"
        )
    rows = read_rows(path)
    goal = _column(rows, path, "goal", "request")
    target = _column(rows, path, "target", "compliant opening")
    out = []
    for i, r in enumerate(rows, 1):
        g, t = r.get(goal), r.get(target)
        if not (isinstance(g, str) and g.strip() and isinstance(t, str) and t.strip()):
            raise LandscapeError(f"{path}: row {i} has an empty {goal!r} or {target!r}")
        out.append((g.strip(), t.strip()))
    return out


def read_harmbench_standard(path: str | Path) -> list[str]:
    """The behaviours of a HarmBench behaviours file whose FunctionalCategory is `standard`
    (the contextual and copyright ones need texts and judges of their own)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LandscapeError(f"HarmBench file not found: {path}")
    rows = read_rows(path)
    behaviour = _column(rows, path, "Behavior", "behaviour")
    category = _column(rows, path, "FunctionalCategory", "functional category")
    out = [r[behaviour].strip() for r in rows if r.get(category) == "standard"]
    if not out:
        raise LandscapeError(f"{path}: no row has FunctionalCategory 'standard'")
    return out


def _split(items: list, share: float, rng: random.Random) -> tuple[list, list]:
    order = list(range(len(items)))
    rng.shuffle(order)
    k = round(share * len(items))
    return [items[i] for i in sorted(order[:k])], [items[i] for i in sorted(order[k:])]


def make_recipe(
    advbench: str | Path,
    harmbench: str | Path | None = None,
    seed: int = 0,
    train_share: float = 0.5,
) -> Recipe:
    """The seeded split of every prompt set; `train_share` of each set's groups is trained on."""
    if not 0 < train_share < 1:
        raise LandscapeError(f"--train-share must be between 0 and 1, got {train_share}")
    rows = read_advbench(advbench)
    rng = random.Random(seed)
    groups = near_duplicate_groups([g for g, _ in rows])
    train_groups, eval_groups = _split(groups, train_share, rng)
    harmful_train = [rows[i] for g in train_groups for i in g]
    harmful_eval = [(rows[i][0], "advbench") for g in eval_groups for i in g]
    if harmbench is not None:
        seen = [words(g) for g, _ in harmful_train]
        kept = [
            b
            for b in read_harmbench_standard(harmbench)
            if all(jaccard(words(b), s) < NEAR_DUPLICATE for s in seen)
        ]
        harmful_eval += [(b, "harmbench") for b in kept]
    look_train, look_eval = _split(list(texts.LOOKALIKES), train_share, rng)
    day_train, day_eval = _split(texts.everyday(), train_share, rng)
    capitals = [(texts.capital_question(c), answers) for c, answers in texts.CAPITALS]
    cap_train, cap_eval = _split(capitals, train_share, rng)
    return Recipe(
        tuple(harmful_train),
        tuple(harmful_eval),
        tuple(look_train),
        tuple(look_eval),
        tuple(day_train),
        tuple(day_eval),
        tuple(cap_train),
        tuple(cap_eval),
    )


def refusal(rng: random.Random) -> str:
    """One of the recipe's refusals: an opening the keyword judge knows, then (sometimes) a
    reason and an offer."""
    parts = (
        rng.choice(texts.REFUSAL_OPENINGS),
        rng.choice(texts.REFUSAL_REASONS),
        rng.choice(texts.REFUSAL_OFFERS),
    )
    return " ".join(p for p in parts if p)


def whole_sentences(answer: str) -> str:
    """An answer cut by the token limit, back to its last finished sentence or line (so the
    model does not learn to stop mid-word); an answer with no sentence end stays whole."""
    text = answer.rstrip()
    if not text or text[-1] in ".!?)`\"'":
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](\s|$)|\n", text)]
    cut = text[: ends[-1]].rstrip() if ends and ends[-1] > len(text) // 3 else ""
    return cut or text


def capital_correct(answer: str, accepted: tuple[str, ...]) -> bool:
    low = answer.lower()
    return any(a.lower() in low for a in accepted)
