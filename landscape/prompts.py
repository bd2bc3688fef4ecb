"""Prompt sets (CSV, JSONL, JSON, TXT, parquet files, Hugging Face datasets, the toy world)
and chat rendering.

HarmBench behaviour files are recognised by their `Behavior` and `ContextString` columns:
a contextual behaviour becomes `CONTEXT\n\n---\n\nBEHAVIOR`, the form HarmBench's own
attacks send to the model (the behaviour alone refers to a text the model never sees). All
rows are kept, copyright ones included, so that the files give the counts they are known by.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import os
import random
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.io import read_text

log = logging.getLogger(__name__)

# Looked for in this order, case-insensitively: AdvBench `goal`, HarmBench `Behavior`,
# JailbreakBench `Goal`, StrongREJECT `forbidden_prompt`, BeaverTails `prompt`.
PROMPT_COLUMNS = (
    "prompt",
    "goal",
    "Behavior",
    "instruction",
    "forbidden_prompt",
    "question",
    "query",
)
HARMBENCH_CONTEXT_COLUMN = "ContextString"
CONTEXT_SEPARATOR = "\n\n---\n\n"
FILE_TYPES = ".csv, .jsonl, .json, .parquet or .txt"
_warned_no_template = False


def _read_parquet(path: Path) -> list[dict]:
    if importlib.util.find_spec("pyarrow") is None:
        raise LandscapeError(
            f"{path}: reading parquet needs pyarrow: pip install pyarrow (or save it as CSV/JSONL)"
        )
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises its own error types for a damaged file
        raise LandscapeError(f"{path}: not a readable parquet file ({e})".splitlines()[0]) from e


def read_rows(path: Path) -> list:
    """Rows of a prompt file: dicts (CSV, JSONL, JSON objects, parquet) or strings (TXT, JSON
    strings)."""
    ext = path.suffix.lower()
    if ext == ".parquet":
        return _read_parquet(path)
    if ext not in (".csv", ".txt", ".jsonl", ".json"):
        raise LandscapeError(
            f"{path}: unknown prompt file type {ext or '(none)'!r}: use {FILE_TYPES}"
        )
    text = read_text(path, "utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    if ext == ".csv":
        # newline="": line breaks inside quoted fields (HarmBench contexts) are kept as they are.
        return list(csv.DictReader(io.StringIO(text, newline="")))
    if ext == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if ext == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise LandscapeError(f"{path}: line {i} is not valid JSON ({e.msg})") from None
        return rows
    if not text.strip():
        return []
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise LandscapeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(rows, list):
        raise LandscapeError(f"{path}: expected a JSON list of objects or strings")
    return rows


def load_prompts(
    source: str, column: str | None = None, n: int | None = None, seed: int = 0
) -> list[str]:
    """Prompts from a file, a world's set `WORLD:NAME` (`toy:harmful`) or
    `hf:ORG/NAME[:SPLIT]`; `n` draws a seeded sample kept in file order."""
    from landscape.world import world_of

    in_world = world_of(source)
    if in_world is not None:
        world, name = in_world
        prompts = list(world.prompt_set(name))
    elif source.startswith("hf:"):
        prompts = _prompts_from_rows(_hf_rows(source), source, column)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise LandscapeError(f"prompt file does not exist: {path}")
        prompts = _prompts_from_rows(read_rows(path), str(path), column)
    if n is not None:
        if n < 1 or n > len(prompts):
            raise LandscapeError(f"cannot take {n} prompts from {source}: it holds {len(prompts)}")
        chosen = sorted(random.Random(seed).sample(range(len(prompts)), n))
        prompts = [prompts[i] for i in chosen]
    log.info("loaded %d prompts from %s", len(prompts), source)
    return prompts


def _offline() -> bool:
    flags = (os.environ.get(v, "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return any(f not in ("0", "", "false", "False") for f in flags)


def _hf_rows(source: str) -> list[dict]:
    """Rows of a Hugging Face dataset `hf:ORG/NAME[:SPLIT]` (needs `datasets` and the hub)."""
    name, _, split = source[3:].partition(":")
    name, split = name.strip(), split.strip() or None
    if not name:
        raise LandscapeError(f"{source!r}: give a data set, e.g. hf:walledai/AdvBench:train")
    instead = f"download the data set once and pass its file instead (a {FILE_TYPES} path)"
    if _offline():
        raise LandscapeError(f"{source}: the Hugging Face hub cannot be reached offline: {instead}")
    if importlib.util.find_spec("datasets") is None:
        raise LandscapeError(
            f"{source}: needs the datasets package (pip install datasets), or {instead}"
        )
    import datasets

    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:  # network, auth and naming errors all come as different types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LandscapeError(f"{source}: cannot load the data set ({first}); or {instead}") from e
    if split is None:
        splits = list(data)
        if len(splits) != 1:
            raise LandscapeError(
                f"{source} has splits {', '.join(splits)}: name one, e.g. hf:{name}:{splits[0]}"
            )
        data = data[splits[0]]
    return [dict(r) for r in data]


def find_column(
    present: list[str],
    where: str,
    wanted: tuple[str, ...] = PROMPT_COLUMNS,
    what: str = "prompt",
    hint: str = "; use --prompt-column to pick one",
) -> str:
    """The first of `wanted` among the columns `present`, matched case-insensitively."""
    for want in wanted:
        for c in present:
            if c.lower() == want.lower():
                return c
    raise LandscapeError(
        f"{where}: no {what} column found (looked for {', '.join(wanted)}); "
        f"columns: {', '.join(present) or '(none)'}{hint}"
    )


def _prompts_from_rows(rows: list, where: str, column: str | None) -> list[str]:
    if not rows:
        raise LandscapeError(f"{where}: no prompts (the file is empty or has no rows)")
    if all(isinstance(r, str) for r in rows):
        prompts = rows
    elif all(isinstance(r, dict) for r in rows):
        present = list(rows[0])
        if column is None:
            column = find_column(present, where)
        elif column not in present:
            raise LandscapeError(
                f"{where}: no column {column!r}; columns: {', '.join(present) or '(none)'}"
            )
        with_context = column == "Behavior" and HARMBENCH_CONTEXT_COLUMN in present
        prompts = []
        for i, r in enumerate(rows, 1):
            if column not in r:
                raise LandscapeError(f"{where}: row {i} has no {column!r}")
            text = r[column]
            context = r.get(HARMBENCH_CONTEXT_COLUMN) if with_context else None
            if isinstance(text, str) and isinstance(context, str) and context.strip():
                text = f"{context}{CONTEXT_SEPARATOR}{text}"
            prompts.append(text)
        if with_context:
            n_ctx = sum(1 for r in rows if (r.get(HARMBENCH_CONTEXT_COLUMN) or "").strip())
            log.info("%s: %d HarmBench behaviours come with their context", where, n_ctx)
    else:
        raise LandscapeError(f"{where}: rows must be all objects or all strings")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p, str) or not p.strip():
            raise LandscapeError(f"{where}: prompt {i} is empty or not text")
    return prompts


def render_chat(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """The prompt inside the tokenizer's chat template, ending where the assistant's turn begins."""
    global _warned_no_template
    if not getattr(tokenizer, "chat_template", None):
        if not _warned_no_template:
            log.warning("the tokenizer has no chat template: prompts are used as plain text")
            _warned_no_template = True
        return prompt + "\n"
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
