"""The run folder: config.json, env.json, points.jsonl, generations.jsonl; a killed run resumes.

Writes are ordered so that a kill at any moment leaves a folder that resumes to the same bytes
as an uninterrupted run: a point's generations are appended before its record, and on resume
a truncated last line and generations without a finished point are dropped.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.io import (
    LOCK_NAME,
    atomic_write,
    building_folder,
    dumps_json,
    dumps_line,
    raw_jsonl,
    read_json,
    read_jsonl,
    read_lines,
)

log = logging.getLogger(__name__)

CONFIG, ENV, POINTS, GENERATIONS = "config.json", "env.json", "points.jsonl", "generations.jsonl"
CALIBRATION = "calibration.json"  # coherence thresholds (landscape.coherence)


def _normalise(config: dict) -> dict:
    """The config as it reads back from JSON (tuples become lists), to compare like with like."""
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except TypeError as e:
        raise LandscapeError(f"the run config is not JSON-serialisable: {e}") from None


def _first_difference(old, new, prefix: str = "") -> str | None:
    """Dotted key of the first difference (keys in sorted order), or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                return key
            diff = _first_difference(old[k], new[k], key)
            if diff:
                return diff
        return None
    return None if old == new else (prefix or "(whole config)")


def _lookup(cfg, dotted: str):
    for part in dotted.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return "(absent)"
        cfg = cfg[part]
    return json.dumps(cfg)


def first_difference(old: dict, new: dict) -> str | None:
    """`key (old value vs new value)` at the first difference of two configs, or None."""
    old, new = _normalise(old), _normalise(new)
    key = _first_difference(old, new)
    return None if key is None else f"{key} ({_lookup(old, key)} vs {_lookup(new, key)})"


def read_config(folder: str | Path) -> dict:
    """A run folder's config.json; LandscapeError when `folder` holds no run."""
    path = Path(folder) / CONFIG
    if not Path(folder).is_dir():
        raise LandscapeError(f"{folder}: no such run folder")
    if not path.is_file():
        raise LandscapeError(f"{folder}: not a run folder (no {CONFIG})")
    config = read_json(path)
    if not isinstance(config, dict):
        raise LandscapeError(f"{path} does not hold a config (a JSON object)")
    return config


def write_folder(out: str | Path, files: dict[str, str], finish=None) -> None:
    """Make the folder `out` holding `files` (name -> text) all at once: written into a hidden
    sibling, `finish(sibling)` run on it (to add e.g. a figure), then renamed into place, so
    `out` never exists half-written. `out` must be absent or an empty folder."""
    with building_folder(out) as tmp:
        for name, text in files.items():
            atomic_write(tmp / name, text)
        if finish is not None:
            finish(tmp)


def generation_records(
    prompts: list[str],
    answers: list[str],
    verdicts: dict[str, list[bool]],
    evidence: dict[str, list[dict]] | None = None,
    *,
    key=(),
    samples: int = 1,
    index=None,
    coherence: list[dict] | None = None,
    stopped: list[bool] | None = None,
) -> list[dict]:
    """The records of generations.jsonl (and of AsFT's answers.jsonl): one per answer, with
    its point's `key`, the prompt, which `sample` of that prompt it is, the answer, each
    judge's verdict (`unsafe`) and, for judges that give it, their `evidence`. `index`: the
    answers' positions among all that the point asked (default: 0, 1, ...). `coherence`:
    each answer's coherence signals and outcome (landscape.coherence). `stopped`: which
    answers were cut at their refusal string (early stopping), `"stopped": "refusal"`."""
    index = range(len(prompts)) if index is None else index
    out = []
    for j, (i, p, a) in enumerate(zip(index, prompts, answers, strict=True)):
        rec = {
            "key": [int(k) for k in key],
            "prompt": p,
            "sample": i % samples,
            "answer": a,
            "unsafe": {n: bool(v[j]) for n, v in verdicts.items()},
        }
        if stopped is not None and stopped[j]:
            rec["stopped"] = "refusal"
        if evidence:
            rec["evidence"] = {n: e[j] for n, e in evidence.items()}
        if coherence is not None:
            rec["coherence"] = coherence[j]
        out.append(rec)
    return out


class RunStore:
    """A run folder. `RunStore.check` validates without writing; `create` makes it and resumes."""

    def __init__(self, out_dir: str | Path, config: dict):
        self.out_dir = Path(out_dir)
        self.config = _normalise(config)

    @staticmethod
    def check(out_dir: str | Path, config: dict) -> None:
        """Raise LandscapeError when `out_dir` cannot hold this run; writes nothing."""
        out = Path(out_dir)
        new = _normalise(config)
        if not out.exists():
            return
        if not out.is_dir():
            raise LandscapeError(f"output path exists and is not a folder: {out}")
        cfg_path = out / CONFIG
        if not cfg_path.exists():
            if any(p.name != LOCK_NAME for p in out.iterdir()):
                raise LandscapeError(
                    f"folder is not empty and holds no run (no {CONFIG}): {out}; choose another"
                )
            return
        old = read_json(cfg_path)
        key = _first_difference(old, new)
        if key is not None:
            raise LandscapeError(
                f"folder holds a run with a different config: first difference at {key} "
                f"({_lookup(old, key)} vs {_lookup(new, key)}); use another folder"
            )

    def create(self) -> RunStore:
        """Make the folder, write config.json if absent, and repair what a kill left behind."""
        self.check(self.out_dir, self.config)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not self.path(CONFIG).exists():
            self.write_json(CONFIG, self.config)
        self._repair()
        return self

    def _repair(self) -> None:
        points, dropped = read_lines(self.path(POINTS))
        if dropped:
            log.warning("dropping a truncated last line of %s", self.path(POINTS))
            self.write_text(POINTS, "".join(line + "\n" for line, _ in points))
        keys = {tuple(rec["key"]) for _, rec in points}
        gens, dropped = read_lines(self.path(GENERATIONS))
        kept = [line for line, rec in gens if tuple(rec["key"]) in keys]
        if dropped or len(kept) < len(gens):
            n = len(gens) - len(kept) + int(dropped)
            log.warning("dropping %d generation lines of unfinished points", n)
            self.write_text(GENERATIONS, "".join(line + "\n" for line in kept))
        if points:
            log.info("resuming %s: %d points done", self.out_dir, len(points))

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def done(self) -> dict[tuple[int, ...], dict]:
        """Finished point records by key (grid indices); a truncated last line is ignored."""
        points, _ = read_lines(self.path(POINTS))
        return {tuple(rec["key"]): rec for _, rec in points}

    def append_point(self, record: dict, generations: list[dict]) -> None:
        """Append a point's generations, then its record (the record marks the point done)."""
        if "key" not in record:
            raise ValueError("a point record needs a 'key' (its grid indices)")
        key = [int(k) for k in record["key"]]
        record = {**record, "key": key}
        lines = []
        for g in generations:
            if "key" in g and [int(k) for k in g["key"]] != key:
                raise ValueError(f"generation key {g['key']} differs from its point's {key}")
            lines.append(dumps_line({**g, "key": key}))
        self._append(GENERATIONS, "".join(lines))
        self._append(POINTS, dumps_line(record))

    def _append(self, name: str, text: str) -> None:
        with open(self.path(name), "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def write_env(self, env: dict) -> None:
        self.write_json(ENV, env)

    def write_json(self, name: str, obj) -> None:
        self.write_text(name, dumps_json(obj))

    def write_text(self, name: str, text: str) -> None:
        atomic_write(self.path(name), text)


# Readers of run files, re-exported for the modules that take them from here.
__all__ = [
    "CONFIG",
    "ENV",
    "GENERATIONS",
    "POINTS",
    "RunStore",
    "dumps_json",
    "first_difference",
    "generation_records",
    "raw_jsonl",
    "read_config",
    "read_jsonl",
    "write_folder",
]
