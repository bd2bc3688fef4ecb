"""Before/after comparison: methods × poison ratios, HS and FA in the layout of the paper's
Table 2, with the diagnostics that say whether the paper's premise holds here."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from pathlib import Path

from tqdm.auto import tqdm

from landscape import directions as D
from landscape.asft.config import LATER, TRAINING_LATER, AsftConfig, check_run_folder, stored_config
from landscape.asft.evaluate import evaluate, hs_key, load_judges
from landscape.asft.finetune import finetune, training_data
from landscape.asft.methods import (
    alt_variant,
    anchor_direction,
    get_method,
    parse_anchor,
    target_names,
)
from landscape.asft.report import format_table
from landscape.asft.table import mean_rows, seed_spread
from landscape.checks import in_range
from landscape.errors import LandscapeError
from landscape.io import atomic_write, check_writable, folder_lock, read_json, write_json
from landscape.models import load_model

log = logging.getLogger(__name__)


def _label(method: str, variant: str | None, anchor: str | None = None) -> str:
    label = f"{method}[{variant}]" if variant else method
    return f"{label}@{anchor}" if anchor else label


def run_label(run: AsftConfig) -> str:
    """A run's row label in a comparison, from its own settings: asft and asft-alt with their
    variant, the random-anchor control marked `@random` whatever its seed (so that its seeds
    aggregate into one row), every other method by its name."""
    variant = run.variant if run.method in ("asft", "asft-alt") else None
    return _label(run.method, variant, "random" if run.anchor else None)


def _folder(out: Path, label: str, run: AsftConfig) -> Path:
    """A run's folder: its label made a file name, with the random anchor's seed."""
    seed = parse_anchor(run.anchor)
    if seed is not None:
        label = label.replace("@random", f"@random{seed}")
    name = label.replace("[", "-").replace("]", "").replace(":", "").replace("@", "-")
    return out / f"{name}-p{run.p}"


def _settings(method: str, variants, controls: bool, seed: int) -> list[tuple]:
    """(variant, anchor) pairs that `method` runs with. With `controls`, AsFT also runs the
    isotropic l2 penalty and every variant anchored to a norm-matched random direction
    (seeded by the run's seed): the two controls an effect of the direction must beat."""
    if method == "asft-alt":
        variants = sorted({alt_variant(v) for v in variants})  # one per subspace
    elif method != "asft":
        return [(None, None)]
    out = [(v, None) for v in variants]
    if controls and method == "asft":
        out += [("l2", None)] if "l2" not in variants else []
        out += [(v, f"random:{seed}") for v in variants if v != "l2"]
    return out


def _runs(cfg: AsftConfig, methods, ratios, variants, controls: bool = False):
    for method in methods:
        for variant, anchor in _settings(method, variants, controls, cfg.seed):
            for p in ratios:
                run = dataclasses.replace(
                    cfg, method=method, p=p, variant=variant or cfg.variant, anchor=anchor
                )
                yield run_label(run), run


def diagnostics(cfg: AsftConfig, variants: list[str]) -> dict:
    """cos(d_aligned, d_harm), the signed component of d_harm along d_aligned, and the share of
    d_harm's energy inside each variant's allowed subspace, with a random direction beside it."""
    from landscape.asft.penalty import diagnostics as share

    _, aligned_path = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    model, _ = load_model(aligned_path, dtype="float32", device="cpu")
    names = target_names(model, cfg.target_modules)
    d_al = anchor_direction("aligned", cfg, model, names)
    d_harm = anchor_direction("harmful", cfg, model, names)
    d_rand = D.random(model, names, seed=cfg.seed).normalized("layer", model)
    out = {
        "cos_aligned_harm": d_al.cosine(d_harm),
        "cos_aligned_random": d_al.cosine(d_rand),
        "cos_aligned_harm_per_tensor": d_al.cosine_per_tensor(d_harm),
        "variants": {},
    }
    for v in variants:
        out["variants"][v] = {"harm": share(d_harm, d_al, v), "random": share(d_rand, d_al, v)}
    return out


def _harmful_source(cfg: AsftConfig, runs, folders) -> str | None:
    """The harmful direction of the diagnostics: --harmful; on the toy pair, None (the toy
    world's harmful fine-tune); else the update of this comparison's SFT run at the largest p > 0 (an
    SFT on poisoned data is the harmful fine-tune the paper compares against)."""
    if cfg.harmful is not None or cfg.aligned is None:
        return cfg.harmful
    sft = [(run.p, f) for (_, run), f in zip(runs, folders) if run.method == "sft" and run.p > 0]
    if not sft:
        return None
    folder = max(sft)[1]
    return str(folder / ("model" if cfg.full else "adapter"))


# What the "before" evaluation depends on; before.json is redone when any of it changes.
_EVAL_KEYS = (
    "aligned",
    "task",
    "eval_prompts",
    "max_new_tokens",
    "seed",
    "dtype",
    *(k for k in LATER if k not in TRAINING_LATER),
)


def _eval_config(cfg: AsftConfig) -> dict:
    stored = stored_config(dataclasses.asdict(cfg))
    return {k: stored[k] for k in _EVAL_KEYS if k in stored}


def _before_is_current(before: dict, cfg: AsftConfig) -> bool:
    if "eval_config" in before:
        return before["eval_config"] == _eval_config(cfg)
    # Written before the evaluation options existed: valid while they are at their defaults.
    return not any(k in _eval_config(cfg) for k in LATER if k not in TRAINING_LATER)


class _Judges:
    """The HS judges, loaded on first use and then shared by every run of a comparison."""

    def __init__(self, cfg: AsftConfig):
        self.cfg, self.judges = cfg, None

    def __call__(self) -> list:
        if self.judges is None:
            self.judges = load_judges(self.cfg)
        return self.judges


def _before(cfg: AsftConfig, task, judges: _Judges, out: Path, name: str = "before") -> dict:
    """The aligned model's own evaluation, `out/<name>.json`: reused while the evaluation
    settings it was made with are current."""
    before_path = out / f"{name}.json"
    before = read_json(before_path) if before_path.exists() else None
    if before is not None and _before_is_current(before, cfg):
        return before
    if before is not None:
        log.info("%s was made with other evaluation settings: evaluating again", before_path)
    _, aligned_path = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    model, tok = load_model(aligned_path, dtype=cfg.dtype, device=cfg.device)
    before = {
        **evaluate(model, tok, task, cfg, judges(), out / f"{name}_answers.jsonl"),
        "eval_config": _eval_config(cfg),
    }
    del model
    write_json(before_path, before)
    return before


def _row(label: str, run: AsftConfig, r: dict, first: str) -> dict:
    hs = {k: v for k, v in sorted(r.items()) if k.startswith("hs_")}
    hs.setdefault(first, r["hs"])  # results made before per-judge keys: hs was this judge's
    u = r.get("update") or {}  # results made before updates were measured have none
    return {
        "method": label,
        "p": run.p,
        "hs": r["hs"],
        "fa": r["fa"],
        **hs,
        "lam": run.lam,
        "lam_released": run.lam_released,
        "lr": run.lr,
        "train_seconds": r["train_seconds"],
        "update_norm": u.get("update_norm"),
        "update_cos_d": u.get("cos"),
        "update_along_energy": u.get("along_energy_share"),
        "update_penalised": u.get("penalised_share"),
    }


def against_sft(cfg: AsftConfig, runs, folders, results: list[dict]) -> list[dict]:
    """For every run beside an SFT run at the same p: cos(ΔW, ΔW_SFT), and how hard the
    run's penalty pulls at SFT's solution, λ·pen(ΔW_SFT) under its variant and anchor,
    beside SFT's task-loss gain over its training (the first steps' loss minus the last
    steps'). A penalty that barely registers at ΔW_SFT cannot be what changes the result."""
    from landscape.asft.penalty import diagnostics as measure
    from landscape.asft.update import update_cosine

    sft = {run.p: (f, r) for (_, run), f, r in zip(runs, folders, results) if run.method == "sft"}
    if not sft:
        return [{} for _ in runs]
    _, aligned_path = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    model, _ = load_model(aligned_path, dtype="float32", device="cpu")
    names = target_names(model, cfg.target_modules)

    def update(folder: Path) -> D.Direction:
        src = str(folder / ("model" if cfg.full else "adapter"))
        return anchor_direction("harmful", dataclasses.replace(cfg, harmful=src, anchor=None),
                                model, names)  # fmt: skip

    sft_updates = {p: update(f) for p, (f, _) in sft.items()}
    out = []
    for (_, run), folder in zip(runs, folders):
        if run.method == "sft" or run.p not in sft:
            out.append({})
            continue
        d_sft, r_sft = sft_updates[run.p], sft[run.p][1]
        row = {"cos_sft_update": update_cosine(update(folder).tensors, d_sft.tensors)}
        method = get_method(run.method)
        if method.penalty is not None:
            anchor = anchor_direction(method.anchor, run, model, names)
            m = measure(d_sft, anchor, method.penalty(run.variant))
            row["pen_at_sft"] = run.lam_toolkit * m["penalised_share"] * m["update_norm"] ** 2
        if r_sft.get("initial_loss") is not None:
            row["sft_loss_gain"] = r_sft["initial_loss"] - r_sft["final_loss"]
        out.append(row)
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def _plan(cfg, methods, ratios, variants, controls, seeds, out: Path) -> list[tuple]:
    """(seed, label, run, folder) of every run. Without `seeds` the runs are at --seed, in
    folders named as before seeds existed; with them, each folder ends in -s<seed>."""
    plan = []
    for seed in seeds or [cfg.seed]:
        seeded = dataclasses.replace(cfg, seed=seed)
        for label, run in _runs(seeded, methods, ratios, variants, controls):
            folder = _folder(out, label, run)
            if seeds:
                folder = folder.with_name(f"{folder.name}-s{seed}")
            plan.append((seed, label, run, folder))
    return plan


def compare(
    cfg: AsftConfig,
    methods: list[str],
    ratios: list[float],
    out: str | Path,
    variants: list[str],
    controls: bool = False,
    seeds: list[int] | None = None,
) -> dict:
    """Run every (method, variant, p) into `out/<label>-p<p>/` (finished runs are reused), and
    write `results.csv`, `diagnostics.json` and `table.md`. The judges are loaded once.
    `controls`: AsFT's isotropic and random-anchor controls beside each variant. `seeds`:
    every run at each training seed (folders `...-s<seed>`, before evaluations
    `before-s<seed>.json`); Table 2 then holds the means, and a seed table the spread."""
    from landscape.judges import parse_specs

    out = Path(out)
    if seeds is not None:
        for s in seeds:
            in_range(s, "--seeds", ge=0)
        if not seeds or len(set(seeds)) != len(seeds):
            raise LandscapeError("--seeds needs one or more different seeds")
    plan = _plan(cfg, methods, ratios, variants, controls, seeds, out)
    for _, _, run, _ in plan:  # all bad input is caught before any work starts
        run.validate()
    check_writable(out)
    for _, _, run, folder in plan:
        check_run_folder(run, folder)
    judges = _Judges(cfg)
    with folder_lock(out):  # one comparison per folder at a time
        befores = {}
        for seed in seeds or [cfg.seed]:
            seeded = dataclasses.replace(cfg, seed=seed)
            task, _, _ = training_data(seeded)
            name = f"before-s{seed}" if seeds else "before"
            befores[seed] = _before(seeded, task, judges, out, name=name)

        first = hs_key(parse_specs(cfg.judge)[0][0])
        results = [
            finetune(run, folder, judges=judges) for _, _, run, folder in tqdm(plan, desc="compare")
        ]
        rows = []
        for seed in seeds or [cfg.seed]:
            group = [(i, x) for i, x in enumerate(plan) if x[0] == seed]
            runs = [(label, run) for _, (_, label, run, _) in group]
            folders = [folder for _, (_, _, _, folder) in group]
            res = [results[i] for i, _ in group]
            extras = against_sft(dataclasses.replace(cfg, seed=seed), runs, folders, res)
            rows += [
                {**_row(label, run, r, first), "seed": seed, **extra}
                for (label, run), r, extra in zip(runs, res, extras)
            ]
        _write_csv(out / "results.csv", rows)
        first_seed = [(label, run) for s, label, run, _ in plan if s == plan[0][0]]
        first_folders = [folder for s, _, _, folder in plan if s == plan[0][0]]
        diag = None
        source = _harmful_source(cfg, first_seed, first_folders)
        if source is None and cfg.aligned is not None:
            log.info(
                "no harmful direction for the diagnostics: pass --harmful or compare sft at p > 0"
            )
        else:
            vs = sorted({r.variant for _, r in first_seed if r.method == "asft"}) or [cfg.variant]
            diag = diagnostics(dataclasses.replace(cfg, harmful=source), vs)
            write_json(out / "diagnostics.json", diag)
        several = seeds is not None and len(seeds) > 1
        table = {
            "before": mean_rows([{**b, "method": "before", "p": 0} for b in befores.values()])[0]
            if several
            else befores[plan[0][0]],
            "rows": mean_rows(rows) if several else rows,
            "runs": rows,
            "seeds": seeds or [cfg.seed],
            "spread": seed_spread(befores, rows),
            "ratios": ratios,
            "diagnostics": diag,
        }
        atomic_write(out / "table.md", format_table(table) + "\n")
        return table
