"""The HS–FA frontier: methods (and their controls) over a list of λ and seeds at one poison
ratio, each run in its own folder, and `sweep.csv` with one row per run.

A method is better than another only where its frontier (HS against FA as λ moves) lies
below and to the right of the other's: one λ per method compares two arbitrary points.
`python -m analysis.figures SWEEP --kind frontier` draws it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tqdm.auto import tqdm

from landscape.asft.compare import _before, _folder, _Judges, _runs, _write_csv
from landscape.asft.config import AsftConfig, check_run_folder
from landscape.asft.finetune import finetune, training_data
from landscape.asft.methods import get_method
from landscape.checks import in_range
from landscape.errors import LandscapeError
from landscape.io import check_writable, folder_lock

log = logging.getLogger(__name__)


def sweep_runs(
    cfg: AsftConfig,
    methods: list[str],
    lams: list[float],
    seeds: list[int],
    variants: list[str],
    controls: bool,
) -> list[tuple[str, AsftConfig, str]]:
    """(label, config, folder name) of every run: each penalised setting at every λ, the
    others (SFT, SafeInstr, Safe LoRA) once, all at every seed."""
    if not lams or not seeds:
        raise LandscapeError("a sweep needs at least one --lams value and one --seeds value")
    for lam in lams:
        in_range(lam, "--lams", ge=0)
    for seed in seeds:
        in_range(seed, "--seeds", ge=0)
    if len(set(seeds)) != len(seeds) or len(set(lams)) != len(lams):
        raise LandscapeError("--lams and --seeds must not repeat a value")
    out = []
    for seed in seeds:
        seeded = dataclasses.replace(cfg, seed=seed)
        for label, run in _runs(seeded, methods, [cfg.p], variants, controls):
            if get_method(run.method).penalty is None:
                out.append((label, run, f"{_folder(Path(), label, run).name}-s{seed}"))
                continue
            for lam in lams:
                named = f"{label}-lam{lam:g}"
                one = dataclasses.replace(run, lam=lam)
                out.append((label, one, f"{_folder(Path(), named, one).name}-s{seed}"))
    return out


def sweep(
    cfg: AsftConfig,
    methods: list[str],
    lams: list[float],
    seeds: list[int],
    out: str | Path,
    variants: list[str],
    controls: bool = False,
) -> list[dict]:
    """Run the sweep into `out` (finished runs are reused; a killed sweep resumes), with the
    aligned model's own evaluation per seed (`before-s<seed>.json`), and write `sweep.csv`.
    Returns its rows."""
    out = Path(out)
    runs = sweep_runs(cfg, methods, lams, seeds, variants, controls)
    for _, run, _ in runs:  # all bad input is caught before any work starts
        run.validate()
    check_writable(out)
    for _, run, name in runs:
        check_run_folder(run, out / name)
    judges = _Judges(cfg)
    rows = []
    with folder_lock(out):
        for seed in seeds:
            seeded = dataclasses.replace(cfg, seed=seed)
            task, _, _ = training_data(seeded)
            b = _before(seeded, task, judges, out, name=f"before-s{seed}")
            rows.append(_record("aligned (before)", seeded, b, None))
        for label, run, name in tqdm(runs, desc="sweep"):
            r = finetune(run, out / name, judges=judges)
            penalised = get_method(run.method).penalty is not None
            rows.append(_record(label, run, r, run.lam if penalised else None))
        _write_csv(out / "sweep.csv", rows)
    return rows


def _record(label: str, run: AsftConfig, r: dict, lam: float | None) -> dict:
    return {
        "method": label,
        "p": run.p,
        "lam": lam,
        "lam_released": None if lam is None else run.lam_released,
        "seed": run.seed,
        "pair_seed": run.pair_seed,
        "hs": r["hs"],
        "n_hs": r.get("n_hs"),
        "fa": r["fa"],
        "n_fa": r.get("n_fa"),
        "update_norm": (r.get("update") or {}).get("update_norm"),
    }
