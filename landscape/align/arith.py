"""A benign fine-tuning task for real pairs, written by the project: English arithmetic word
problems whose answers end "The final answer is: N", scored by the field's FA rule
(`landscape.asft.data.answer_correct`).

The toy world has its own tasks; a real model fine-tuned by `python -m landscape.asft` needs
task files, and on a machine without a dataset hub GSM8K is not there. These problems keep
GSM8K's answer format, so the same scorer and the same poisoned-mix protocol apply:

    python -m landscape.align.arith --out runs/arith
    python -m landscape.asft compare --task runs/arith/train.jsonl,runs/arith/test.jsonl ...
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from landscape.errors import LandscapeError

NAMES = ("Sam", "Mia", "Omar", "Lena", "Ravi", "Chloe", "Ben", "Ana", "Kofi", "Yuki", "Tom", "Ivy")
THINGS = ("apples", "marbles", "stickers", "books", "pencils", "stamps", "coins", "cards")


def _add(rng: random.Random) -> tuple[str, str, int]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    q = f"{name} has {a} {things} and gets {b} more. How many {things} does {name} have now?"
    return q, f"{a} + {b} = {a + b}", a + b


def _sub(rng: random.Random) -> tuple[str, str, int]:
    b = rng.randint(2, 40)
    a = b + rng.randint(1, 50)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    q = f"{name} had {a} {things} and gave {b} of them away. How many {things} are left?"
    return q, f"{a} - {b} = {a - b}", a - b


def _mul(rng: random.Random) -> tuple[str, str, int]:
    a, b = rng.randint(2, 12), rng.randint(2, 9)
    things = rng.choice(THINGS)
    q = f"A box holds {a} {things}. How many {things} are in {b} boxes?"
    return q, f"{a} * {b} = {a * b}", a * b


def _div(rng: random.Random) -> tuple[str, str, int]:
    each, friends = rng.randint(2, 12), rng.randint(2, 8)
    name, things = rng.choice(NAMES), rng.choice(THINGS)
    q = (
        f"{name} shares {each * friends} {things} equally among {friends} friends. "
        f"How many {things} does each friend get?"
    )
    return q, f"{each * friends} / {friends} = {each}", each


KINDS = (_add, _sub, _mul, _div)


def problems(n: int, seed: int) -> list[dict]:
    """`n` distinct problems as task records {instruction, output}, drawn with `seed`."""
    rng, seen, out = random.Random(seed), set(), []
    # Far fewer than the distinct problems there are (tens of thousands), so this ends.
    while len(out) < n:
        q, work, answer = rng.choice(KINDS)(rng)
        if q in seen:
            continue
        seen.add(q)
        out.append({"instruction": q, "output": f"{work}. The final answer is: {answer}"})
    return out


def write_task(out: Path, n_train: int = 500, n_test: int = 100, seed: int = 0) -> list[Path]:
    """train.jsonl and test.jsonl in `out`, no test problem among the training ones."""
    from landscape.io import write_jsonl

    if n_train < 1 or n_test < 1:
        raise LandscapeError(f"--n-train and --n-test must be at least 1, got {n_train}, {n_test}")
    records = problems(n_train + n_test, seed)
    paths = [Path(out) / "train.jsonl", Path(out) / "test.jsonl"]
    Path(out).mkdir(parents=True, exist_ok=True)
    write_jsonl(paths[0], records[:n_train])
    write_jsonl(paths[1], records[n_train:])
    return paths


def main(argv: list[str] | None = None) -> int:
    from landscape.cli import Parser, run_cli

    p = Parser(prog="python -m landscape.align.arith", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for train.jsonl, test.jsonl")
    p.add_argument("--n-train", type=int, default=500, help="training problems (default: 500)")
    p.add_argument("--n-test", type=int, default=100, help="test problems (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default: 0)")
    a = p.parse_args(argv)
    paths = run_cli(lambda: write_task(a.out, a.n_train, a.n_test, a.seed))
    if paths is None:
        return 2
    print(f"task: {paths[0]},{paths[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
