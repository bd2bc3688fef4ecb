"""Fine-tuning data: a benign task mixed with a share p of harmful samples, as in the field's
harmful-fine-tuning protocol (⌊p·n⌋ harmful request → compliant answer, ⌊(1−p)·n⌋ benign).

A task is a world's (`toy:sst2`, its own scorer) or read from files (scored by
`answer_correct`); the harmful and refusal pools are files or, by default, the default
world's."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.prompts import PROMPT_COLUMNS
from landscape.world import Example, Task, get_world, world_of

log = logging.getLogger(__name__)

FINAL_ANSWER = re.compile(r"The final answer is:\s*(-?\d+)")


def answer_correct(answer: str, gold: str) -> bool:
    """The field's FA rule for a task read from files: where the gold answer states "The final
    answer is: N", the answer's own stated number (else its last number) must be N; any other
    gold answer must be matched exactly, surrounding whitespace aside."""
    want = FINAL_ANSWER.search(gold)
    if want is None:
        return answer.strip() == gold.strip()
    stated = FINAL_ANSWER.search(answer)
    nums = [stated.group(1)] if stated else re.findall(r"-?\d+", answer)
    return bool(nums) and nums[-1] == want.group(1)


def _read_task_file(path: Path) -> list[Example]:
    """Records {instruction, input, output}: the prompt is the instruction, then the input."""
    from landscape.io import raw_jsonl

    out = []
    for i, (_, rec) in enumerate(raw_jsonl(path), 1):
        fields = rec if isinstance(rec, dict) else {}
        missing = [k for k in ("instruction", "output") if not isinstance(fields.get(k), str)]
        if missing:
            raise LandscapeError(f"{path}: line {i} lacks the field(s) {', '.join(missing)}")
        prompt = rec["instruction"] + (f"\nInput: {rec['input']}" if rec.get("input") else "")
        out.append((prompt, rec["output"]))
    if not out:
        raise LandscapeError(f"{path}: no records")
    return out


def load_task(spec: str, seed: int = 0) -> Task:
    """A world's task (`toy:sst2`, `toy:agnews`, `toy:gsm8k`), or `TRAIN.jsonl[,TEST.jsonl]`
    (without a test file, the last 10% of the training file is held out)."""
    found = world_of(spec)
    if found is not None:
        world, name = found
        return world.task(name, seed)
    paths = [Path(p).expanduser() for p in spec.split(",")]
    for p in paths:
        if not p.is_file():
            raise LandscapeError(f"task file does not exist: {p}")
    train = _read_task_file(paths[0])
    if len(paths) > 1:
        return Task(spec, train, _read_task_file(paths[1]), answer_correct)
    cut = max(1, len(train) // 10)
    return Task(spec, train[:-cut], train[-cut:], answer_correct)


# Request columns are the prompt files' (landscape.prompts), so that one file gives the same
# column in the grid and here. BeaverTails has `prompt`/`response`, Alpaca-style files
# `instruction`(+`input`)/`output`.
RESPONSE_COLUMNS = ("response", "output", "answer", "completion", "target")
INPUT_COLUMN = "input"  # with `instruction`: appended as in the task files
SAFE_COLUMN = "is_safe"  # BeaverTails: whether the response is safe


def _column(present: list[str], wanted: tuple[str, ...], what: str, where: str) -> str:
    from landscape.prompts import find_column

    return find_column(present, where, wanted, what, hint="")


def _as_bool(value) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def load_pairs(path: str | Path, safe: bool, flag: str) -> list[Example]:
    """(request, answer) pairs from a CSV, JSONL, JSON or parquet file, columns found by name
    (`prompt`/`response`, `instruction`[+`input`]/`output`, ...). A BeaverTails file is
    recognised by its `is_safe` column, and only the rows whose `is_safe` equals `safe` are
    kept: unsafe answers for harmful data, safe ones for safety data."""
    from landscape.prompts import read_rows

    path = Path(path).expanduser()
    where = f"{flag} {path}"
    if not path.is_file():
        raise LandscapeError(f"{flag}: file does not exist: {path}")
    if path.suffix.lower() == ".txt":
        raise LandscapeError(
            f"{where}: needs request and answer columns: use .csv, .jsonl, .json or .parquet"
        )
    rows = read_rows(path)
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise LandscapeError(f"{where}: expected rows of named columns (a request and an answer)")
    present = list(rows[0])
    q_col = _column(present, PROMPT_COLUMNS, "request", where)
    a_col = _column(present, RESPONSE_COLUMNS, "answer", where)
    in_col = next((c for c in present if c.lower() == INPUT_COLUMN), None)
    safe_col = next((c for c in present if c.lower() == SAFE_COLUMN), None)
    out = []
    for i, r in enumerate(rows, 1):
        if safe_col is not None:
            flag_value = _as_bool(r.get(safe_col))
            if flag_value is None:
                raise LandscapeError(
                    f"{where}: row {i}: {safe_col} is {r.get(safe_col)!r}, not true/false"
                )
            if flag_value != safe:
                continue
        q, a = r.get(q_col), r.get(a_col)
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
            raise LandscapeError(f"{where}: row {i} has an empty or missing {q_col!r} or {a_col!r}")
        extra = r.get(in_col) if in_col and q_col.lower() == "instruction" else None
        if isinstance(extra, str) and extra.strip():
            q = f"{q}\nInput: {extra}"
        out.append((q, a))
    if not out:
        kept = f" with {safe_col} = {str(safe).lower()}" if safe_col else ""
        raise LandscapeError(f"{where}: no rows{kept}")
    log.info(
        "%s: %d (request, answer) pairs from columns %s/%s%s",
        where,
        len(out),
        q_col,
        a_col,
        f", {safe_col} = {safe}" if safe_col else "",
    )
    return out


def harmful_pool(seed: int = 0) -> list[Example]:
    """Harmful requests with compliant answers: the default world's."""
    return get_world().harmful_pool(seed)


def refusal_pool(seed: int = 0) -> list[Example]:
    """Harmful requests with refusals, SafeInstr's safety examples: the default world's."""
    return get_world().refusal_pool(seed)


def poisoned_mix(
    task: Task,
    n: int,
    p: float,
    seed: int = 0,
    safety_share: float = 0.0,
    harmful: list[Example] | None = None,
    refusals: list[Example] | None = None,
) -> list[Example]:
    """⌊p·n⌋ harmful samples and ⌊(1−p)·n⌋ task samples (SafeInstr: a further
    ⌊safety_share·n⌋ refusal samples), drawn without replacement with a seed. `harmful` and
    `refusals` are the pools drawn from (default: the default world's)."""
    if not 0.0 <= p <= 1.0:
        raise LandscapeError(f"the poison ratio p must be in [0, 1], got {p}")
    if n < 1:
        raise LandscapeError(f"n must be at least 1, got {n}")
    n_harm, n_task, n_safe = int(p * n), int((1 - p) * n), int(safety_share * n)
    # The world's pools are built only when drawn from (sampling 0 items draws no random numbers).
    if harmful is None:
        harmful = harmful_pool(seed) if n_harm else []
    if refusals is None:
        refusals = refusal_pool(seed) if n_safe else []
    for what, have, want in (
        ("task", len(task.train), n_task),
        ("harmful", len(harmful), n_harm),
        ("refusal", len(refusals), n_safe),
    ):
        if want > have:
            raise LandscapeError(f"n={n} asks for {want} {what} samples but only {have} exist")
    rng = random.Random(seed)
    mix = (
        rng.sample(task.train, n_task) + rng.sample(harmful, n_harm) + rng.sample(refusals, n_safe)
    )
    rng.shuffle(mix)
    return mix
