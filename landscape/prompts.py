"""Prompt sets (CSV, JSONL, JSON, TXT files or the toy world) and chat rendering."""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

from landscape.errors import LandscapeError

log = logging.getLogger(__name__)

PROMPT_COLUMNS = ("prompt", "goal", "Behavior", "instruction", "forbidden_prompt")
_warned_no_template = False


def _read_rows(path: Path) -> list:
    """Rows of a prompt file: dicts (CSV, JSONL, JSON objects) or strings (TXT, JSON strings)."""
    ext = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    if ext == ".csv":
        return list(csv.DictReader(text.splitlines()))
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
    if ext == ".json":
        if not text.strip():
            return []
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise LandscapeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(rows, list):
            raise LandscapeError(f"{path}: expected a JSON list of objects or strings")
        return rows
    raise LandscapeError(
        f"{path}: unknown prompt file type {ext or '(none)'!r}: use .csv, .jsonl, .json or .txt"
    )


def load_prompts(
    source: str, column: str | None = None, n: int | None = None, seed: int = 0
) -> list[str]:
    """Prompts from a file or `toy:NAME`; `n` draws a seeded sample kept in file order."""
    if source.startswith("toy:"):
        from landscape.toy.data import prompt_set

        prompts = list(prompt_set(source[4:]))
    else:
        prompts = _prompts_from_file(Path(source).expanduser(), column)
    if n is not None:
        if n < 1 or n > len(prompts):
            raise LandscapeError(f"cannot take {n} prompts from {source}: it holds {len(prompts)}")
        chosen = sorted(random.Random(seed).sample(range(len(prompts)), n))
        prompts = [prompts[i] for i in chosen]
    log.info("loaded %d prompts from %s", len(prompts), source)
    return prompts


def _prompts_from_file(path: Path, column: str | None) -> list[str]:
    if not path.is_file():
        raise LandscapeError(f"prompt file does not exist: {path}")
    rows = _read_rows(path)
    if not rows:
        raise LandscapeError(f"{path}: no prompts (the file is empty or has no rows)")
    if all(isinstance(r, str) for r in rows):
        prompts = rows
    elif all(isinstance(r, dict) for r in rows):
        present = list(rows[0])
        if column is None:
            column = next((c for c in PROMPT_COLUMNS if c in present), None)
            if column is None:
                raise LandscapeError(
                    f"{path}: no prompt column found (looked for {', '.join(PROMPT_COLUMNS)}); "
                    f"columns: {', '.join(present)}; pass the column to use"
                )
        elif column not in present:
            raise LandscapeError(
                f"{path}: no column {column!r}; columns: {', '.join(present) or '(none)'}"
            )
        prompts = []
        for i, r in enumerate(rows, 1):
            if column not in r:
                raise LandscapeError(f"{path}: row {i} has no {column!r}")
            prompts.append(r[column])
    else:
        raise LandscapeError(f"{path}: rows must be all objects or all strings")
    for i, p in enumerate(prompts, 1):
        if not isinstance(p, str) or not p.strip():
            raise LandscapeError(f"{path}: prompt {i} is empty or not text")
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
