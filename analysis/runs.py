"""The one reader of run folders for tables and figures: what kind a folder is, and its records.

- a grid run (`python -m landscape.grid`): config.json, points.jsonl, summary.json when it
  finished, generations.jsonl;
- an AsFT comparison (`python -m landscape.asft.compare`): results.csv and before.json;
- a folder of AsFT runs: one subfolder per run, each with config.json and result.json.

Every reader raises LandscapeError with a one-line message on a folder it cannot use, so the
command lines can stop before writing anything. The file rules themselves (a truncated last
line is left out, bad JSON is an error) are `landscape.io`'s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from landscape.asft.table import mean_rows
from landscape.errors import LandscapeError
from landscape.io import read_json, read_jsonl
from landscape.store import CONFIG, GENERATIONS, POINTS, read_config

SUMMARY = "summary.json"


def as_list(items) -> list:
    """One path (or other single input) or many, as a list."""
    if isinstance(items, str | Path):
        return [items]
    return list(items)


def is_grid_run(path: str | Path) -> bool:
    """A folder holding config.json and points.jsonl."""
    path = Path(path)
    return (path / CONFIG).is_file() and (path / POINTS).is_file()


def is_comparison(path: str | Path) -> bool:
    """A folder holding an AsFT comparison's results.csv and before.json (before-s<seed>.json
    for a comparison over seeds)."""
    path = Path(path)
    befores = (path / "before.json").is_file() or any(path.glob("before-s*.json"))
    return (path / "results.csv").is_file() and befores


def is_asft_dir(path: str | Path) -> bool:
    """A folder with at least one subfolder that holds config.json and result.json."""
    path = Path(path)
    return path.is_dir() and any(
        (s / "result.json").is_file() and (s / CONFIG).is_file()
        for s in path.iterdir()
        if s.is_dir()
    )


def _records(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except (OSError, UnicodeDecodeError) as e:
        raise LandscapeError(f"cannot read {path}: {e}") from None


def grid_config(run: str | Path) -> dict:
    """A landscape run's config.json, checked to name one or two directions and a norm."""
    config = read_config(run)
    dirs = config.get("dirs")
    if not isinstance(dirs, list) or len(dirs) not in (1, 2) or "norm" not in config:
        raise LandscapeError(
            f"{run}: not a landscape run folder (config.json names no 1-D or 2-D `dirs`, "
            "or no `norm`)"
        )
    return config


def read_points(run: str | Path) -> list[dict]:
    """Every finished point record of a run folder, as written ([] when there is none yet);
    a truncated last line (a killed run) is left out."""
    return _records(Path(run) / POINTS)


def read_summary(run: str | Path) -> dict:
    """summary.json of a finished run; {} until the run has finished."""
    path = Path(run) / SUMMARY
    summary = read_json(path) if path.is_file() else {}
    return summary if isinstance(summary, dict) else {}


def load_run(run: str | Path) -> tuple[dict, list[dict], dict]:
    """(config, points, summary) of a landscape run folder; LandscapeError if it is not one.

    `points` holds the records with coordinates and an ASR, and may be empty (a run that has
    not finished a point yet); `summary` is {} until the run has finished."""
    config = grid_config(run)
    points = [p for p in read_points(run) if "coords" in p and "asr" in p]
    return config, points, read_summary(run)


def load_generations(run: str | Path, utility: bool = False) -> dict[tuple[int, ...], list[dict]]:
    """generations.jsonl grouped by grid key, in file order ({} if the file is missing): the
    answers to the harmful prompts, or with `utility` those to the utility prompts (records
    with `"set": "utility"`, which are never judged for harm)."""
    out: dict[tuple[int, ...], list[dict]] = {}
    for g in _records(Path(run) / GENERATIONS):
        if (g.get("set") == "utility") == utility:
            out.setdefault(tuple(g.get("key", ())), []).append(g)
    return out


def read_comparison(folder: str | Path) -> tuple[dict, pd.DataFrame]:
    """(before.json, results.csv) of an AsFT comparison folder; over seeds, the before
    evaluations' mean (landscape.asft.table.mean_rows)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LandscapeError(f"not a folder: {folder}")
    if not is_comparison(folder):
        raise LandscapeError(
            f"{folder} is not an AsFT comparison folder (results.csv + before.json)"
        )
    paths = [folder / "before.json"] if (folder / "before.json").is_file() else []
    paths = paths or sorted(folder.glob("before-s*.json"))
    befores = [read_json(p) for p in paths]
    for p, b in zip(paths, befores):
        if not isinstance(b, dict):
            raise LandscapeError(f"{p} does not hold a JSON object")
    before = befores[0]
    if len(befores) > 1:
        before = mean_rows([{**b, "method": "before", "p": 0} for b in befores])[0]
    try:
        results = pd.read_csv(folder / "results.csv")
    except Exception as e:  # pandas raises several types for an empty or broken file
        raise LandscapeError(f"cannot read {folder / 'results.csv'}: {e}") from None
    return before, results


def load_asft_runs(runs_dir: str | Path) -> list[dict]:
    """One record per AsFT run under `runs_dir` (subfolders with config.json + result.json):
    the config merged with the result, plus `name`. LandscapeError when there is none."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise LandscapeError(f"{runs_dir}: no such folder")
    records = []
    for sub in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if (sub / CONFIG).is_file() and (sub / "result.json").is_file():
            cfg, res = read_json(sub / CONFIG), read_json(sub / "result.json")
            if isinstance(cfg, dict) and isinstance(res, dict) and "hs" in res and "fa" in res:
                records.append({**cfg, **res, "name": sub.name})
    if not records:
        raise LandscapeError(
            f"{runs_dir}: not a folder of AsFT runs (no subfolder holds config.json and a "
            "result.json with hs and fa)"
        )
    return records
