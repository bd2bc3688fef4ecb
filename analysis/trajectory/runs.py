"""Fine-tuning runs with snapshots (`landscape.asft train|compare --save-every K`): found
in the folders given, labelled as a comparison labels them, checked to start from the grid's
aligned model, and their snapshots read as updates ΔW in the model's parameter names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from landscape import directions as D
from landscape.asft.compare import run_label
from landscape.asft.config import AsftConfig
from landscape.asft.snapshots import FOLDER, INDEX, START
from landscape.cli import from_options
from landscape.errors import LandscapeError
from landscape.io import read_json, read_jsonl
from landscape.models import fingerprint, load_model
from landscape.store import CONFIG

_HOW = "train it with --save-every K (python -m landscape.asft train|compare ... --save-every K)"


@dataclass
class FineTuneRun:
    """One run folder: its settings, label, snapshot index and start record, and its
    result.json once it has finished ({} before)."""

    path: Path
    config: dict
    label: str
    index: list[dict]
    start: dict
    result: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def p(self) -> float:
        return float(self.config.get("p", 0.0))

    def delta(self, record: dict, model) -> dict[str, torch.Tensor]:
        """The update of snapshot `record` over the weights of `model` (the start model),
        keyed by its parameter names: s·B A per adapted weight, LoRA's scaling included
        (`landscape.directions.from_lora_adapter`, the rule every adapter is read by), or
        the stored W − W0."""
        where = self.path / FOLDER / record["path"]
        if not where.exists():
            raise LandscapeError(f"{self.path}: snapshot {record['path']} is missing")
        if record.get("format") == "full":
            from safetensors.torch import load_file

            d = D.Direction(load_file(str(where)))
            d.check(model)
            return d.tensors
        return D.from_lora_adapter(where, model).tensors


def _has_snapshots(path: Path) -> bool:
    return (path / FOLDER / INDEX).is_file() and (path / FOLDER / START).is_file()


def _read(path: Path) -> FineTuneRun:
    config = read_json(path / CONFIG)
    if not isinstance(config, dict) or "method" not in config:
        raise LandscapeError(f"{path}/{CONFIG} is not a fine-tuning run's config")
    index = read_jsonl(path / FOLDER / INDEX)
    if not index:
        raise LandscapeError(f"{path}: its snapshot index is empty; {_HOW}")
    start = read_json(path / FOLDER / START)
    if not isinstance(start, dict) or "fingerprint" not in start:
        raise LandscapeError(f"{path}/{FOLDER}/{START} records no start model")
    result = read_json(path / "result.json") if (path / "result.json").is_file() else {}
    label = run_label(from_options(AsftConfig, config))
    return FineTuneRun(
        path, config, label, index, start, result if isinstance(result, dict) else {}
    )


def find_runs(paths: list[Path]) -> list[FineTuneRun]:
    """The runs in `paths`: each a run folder with snapshots, or a folder of runs (a
    comparison) whose runs have them. A run, or a folder of runs, without snapshots is
    refused, naming it."""
    runs: list[FineTuneRun] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise LandscapeError(f"{path}: no such fine-tuning run folder")
        if _has_snapshots(path):
            runs.append(_read(path))
            continue
        if (path / CONFIG).is_file():
            raise LandscapeError(f"{path}: the run has no snapshots; {_HOW}")
        subs = sorted(s for s in path.iterdir() if s.is_dir() and (s / CONFIG).is_file())
        if not subs:
            raise LandscapeError(f"{path}: neither a fine-tuning run nor a folder of runs")
        without = [s for s in subs if not _has_snapshots(s)]
        if without:
            raise LandscapeError(
                f"{without[0]}: the run has no snapshots ({len(without)} of {len(subs)} "
                f"runs in {path} have none); {_HOW}"
            )
        runs += [_read(s) for s in subs]
    seen: dict[Path, FineTuneRun] = {}
    for r in runs:
        seen.setdefault(r.path.resolve(), r)
    return list(seen.values())


def check_start(runs: list[FineTuneRun], grid_model, grid_path: Path, aligned: str) -> None:
    """Every run started from the grid's aligned model: the start fingerprint each run
    recorded equals that model's in the run's dtype (the grid's model loaded again in that
    dtype where the two differ). A run from another model, the pair's base model included
    (lisa-base), is refused."""
    dtype = str(next(grid_model.parameters()).dtype).removeprefix("torch.")
    prints = {dtype: fingerprint(grid_model)}
    for run in runs:
        want = run.start.get("dtype", dtype)
        if want not in prints:
            other, _ = load_model(aligned, dtype=want, device="cpu")
            prints[want] = fingerprint(other)
            del other
        if run.start["fingerprint"] != prints[want]:
            raise LandscapeError(
                f"{run.path} was fine-tuned from another model ({run.start.get('model')}, "
                f"weights {run.start['fingerprint']}) than the aligned model of the grid "
                f"{grid_path} (weights {prints[want]} in {want}): its updates are not moves "
                "on that landscape"
            )
