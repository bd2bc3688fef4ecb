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
from landscape.asft.methods import alt_variant, anchor_direction, get_method, target_names
from landscape.asft.table import rows_markdown, table2_rows
from landscape.io import atomic_write, check_writable, folder_lock, read_json, write_json
from landscape.models import load_model

log = logging.getLogger(__name__)


def _label(method: str, variant: str | None, anchor: str | None = None) -> str:
    label = f"{method}[{variant}]" if variant else method
    return f"{label}@{anchor}" if anchor else label


def _folder(out: Path, label: str, p: float) -> Path:
    name = label.replace("[", "-").replace("]", "").replace(":", "").replace("@", "-")
    return out / f"{name}-p{p}"


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
                yield _label(method, variant, anchor), run


def diagnostics(cfg: AsftConfig, variants: list[str]) -> dict:
    """cos(d_aligned, d_harm), the signed component of d_harm along d_aligned, and the share of
    d_harm's energy inside each variant's allowed subspace, with a random direction beside it."""
    from landscape.asft.penalty import diagnostics as share

    _, aligned_path = D.model_paths(cfg.base, cfg.aligned)
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
    _, aligned_path = D.model_paths(cfg.base, cfg.aligned)
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
    _, aligned_path = D.model_paths(cfg.base, cfg.aligned)
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


def compare(
    cfg: AsftConfig,
    methods: list[str],
    ratios: list[float],
    out: str | Path,
    variants: list[str],
    controls: bool = False,
) -> dict:
    """Run every (method, variant, p) into `out/<label>-p<p>/` (finished runs are reused), and
    write `results.csv`, `diagnostics.json` and `table.md`. The judges are loaded once.
    `controls`: AsFT's isotropic and random-anchor controls beside each variant."""
    from landscape.judges import parse_specs

    out = Path(out)
    runs = list(_runs(cfg, methods, ratios, variants, controls))
    for _, run in runs:  # all bad input is caught before any work starts
        run.validate()
    check_writable(out)
    task, _, _ = training_data(cfg)
    folders = [_folder(out, label, run.p) for label, run in runs]
    for (_, run), folder in zip(runs, folders):
        check_run_folder(run, folder)
    judges = _Judges(cfg)
    with folder_lock(out):  # one comparison per folder at a time
        before = _before(cfg, task, judges, out)

        first = hs_key(parse_specs(cfg.judge)[0][0])
        results = [
            finetune(run, folder, judges=judges)
            for (_, run), folder in tqdm(list(zip(runs, folders)), desc="compare")
        ]
        rows = [
            {**_row(label, run, r, first), **extra}
            for (label, run), r, extra in zip(
                runs, results, against_sft(cfg, runs, folders, results)
            )
        ]
        _write_csv(out / "results.csv", rows)
        diag = None
        source = _harmful_source(cfg, runs, folders)
        if source is None and cfg.aligned is not None:
            log.info(
                "no harmful direction for the diagnostics: pass --harmful or compare sft at p > 0"
            )
        else:
            variants = sorted({r.variant for _, r in runs if r.method == "asft"}) or [cfg.variant]
            diag = diagnostics(dataclasses.replace(cfg, harmful=source), variants)
            write_json(out / "diagnostics.json", diag)
        table = {"before": before, "rows": rows, "ratios": ratios, "diagnostics": diag}
        atomic_write(out / "table.md", format_table(table) + "\n")
        return table


def _num(v, fmt: str) -> str:
    return "" if v is None or v == "" else format(float(v), fmt)


def _update_lines(rows: list[dict]) -> list[str]:
    """What each run did to the weights: the table that tells a penalty's effect from
    shrinkage (see `against_sft`)."""
    if not any(r.get("update_norm") is not None for r in rows):
        return []
    lines = [
        "",
        "| run | p | λ (released scale) | ‖ΔW‖ | cos(ΔW, d) | share of ‖ΔW‖² along d | "
        "share penalised | cos(ΔW, ΔW_SFT) | λ·pen(ΔW_SFT) | SFT loss gain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['p']:g} | {_num(r.get('lam_released'), 'g')} | "
            f"{_num(r.get('update_norm'), '.4f')} | {_num(r.get('update_cos_d'), '+.4f')} | "
            f"{_num(r.get('update_along_energy'), '.2e')} | "
            f"{_num(r.get('update_penalised'), '.4f')} | {_num(r.get('cos_sft_update'), '+.4f')} | "
            f"{_num(r.get('pen_at_sft'), '.3g')} | {_num(r.get('sft_loss_gain'), '.3g')} |"
        )
    return lines


def format_table(table: dict) -> str:
    """Markdown in the layout of the paper's Table 2 (landscape.asft.table), then the
    diagnostics of the harmful update against each penalty variant."""
    lines = [rows_markdown(table2_rows(table["before"], table["rows"], table["ratios"]))]
    lines += _update_lines(table["rows"])
    d = table.get("diagnostics")
    if d:
        lines += [
            "",
            f"cos(d_aligned, d_harm) = {d['cos_aligned_harm']:+.4f}   "
            f"(a random direction: {d['cos_aligned_random']:+.4f})",
            "",
            "| variant | harmful update: share allowed | random: share allowed | harmful: signed ⟨d̂, Δ⟩/‖Δ‖ | harmful: share against d |",
            "|---|---|---|---|---|",
        ]
        for v, s in d["variants"].items():
            h, r = s["harm"], s["random"]
            lines.append(
                f"| {v} | {h['allowed_share']:.4f} | {r['allowed_share']:.4f} | "
                f"{h['along_share']:+.4f} | {h['against_share']:.4f} |"
            )
    return "\n".join(lines)
