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
from landscape.asft.config import LATER, AsftConfig, check_run_folder, stored_config
from landscape.asft.evaluate import evaluate, hs_key, load_judges
from landscape.asft.finetune import finetune, training_data
from landscape.asft.methods import alt_variant, anchor_direction, target_names
from landscape.asft.table import rows_markdown, table2_rows
from landscape.io import atomic_write, check_writable, folder_lock, read_json, write_json
from landscape.models import load_model

log = logging.getLogger(__name__)


def _label(method: str, variant: str | None) -> str:
    return f"{method}[{variant}]" if variant else method


def _runs(cfg: AsftConfig, methods, ratios, variants):
    alt = sorted({alt_variant(v) for v in variants})  # AsFT-Alt penalises inside; one per subspace
    for method in methods:
        for variant in {"asft": variants, "asft-alt": alt}.get(method, [None]):
            for p in ratios:
                run = dataclasses.replace(cfg, method=method, p=p, variant=variant or cfg.variant)
                yield _label(method, variant), run


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
_EVAL_KEYS = ("aligned", "task", "eval_prompts", "max_new_tokens", "seed", "dtype", *LATER)


def _eval_config(cfg: AsftConfig) -> dict:
    stored = stored_config(dataclasses.asdict(cfg))
    return {k: stored[k] for k in _EVAL_KEYS if k in stored}


def _before_is_current(before: dict, cfg: AsftConfig) -> bool:
    if "eval_config" in before:
        return before["eval_config"] == _eval_config(cfg)
    # Written before the evaluation options existed: valid while they are at their defaults.
    return not any(k in _eval_config(cfg) for k in LATER)


class _Judges:
    """The HS judges, loaded on first use and then shared by every run of a comparison."""

    def __init__(self, cfg: AsftConfig):
        self.cfg, self.judges = cfg, None

    def __call__(self) -> list:
        if self.judges is None:
            self.judges = load_judges(self.cfg)
        return self.judges


def _before(cfg: AsftConfig, task, judges: _Judges, out: Path) -> dict:
    """The aligned model's own evaluation, `out/before.json`: reused while the evaluation
    settings it was made with are current."""
    before_path = out / "before.json"
    before = read_json(before_path) if before_path.exists() else None
    if before is not None and _before_is_current(before, cfg):
        return before
    if before is not None:
        log.info("%s was made with other evaluation settings: evaluating again", before_path)
    _, aligned_path = D.model_paths(cfg.base, cfg.aligned)
    model, tok = load_model(aligned_path, dtype=cfg.dtype, device=cfg.device)
    before = {
        **evaluate(model, tok, task, cfg, judges(), out / "before_answers.jsonl"),
        "eval_config": _eval_config(cfg),
    }
    del model
    write_json(before_path, before)
    return before


def _row(label: str, run: AsftConfig, r: dict, first: str) -> dict:
    hs = {k: v for k, v in sorted(r.items()) if k.startswith("hs_")}
    hs.setdefault(first, r["hs"])  # results made before per-judge keys: hs was this judge's
    return {
        "method": label,
        "p": run.p,
        "hs": r["hs"],
        "fa": r["fa"],
        **hs,
        "lam": run.lam,
        "lr": run.lr,
        "train_seconds": r["train_seconds"],
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def compare(
    cfg: AsftConfig, methods: list[str], ratios: list[float], out: str | Path, variants: list[str]
) -> dict:
    """Run every (method, variant, p) into `out/<label>-p<p>/` (finished runs are reused), and
    write `results.csv`, `diagnostics.json` and `table.md`. The judges are loaded once."""
    from landscape.judges import parse_specs

    out = Path(out)
    runs = list(_runs(cfg, methods, ratios, variants))
    for _, run in runs:  # all bad input is caught before any work starts
        run.validate()
    check_writable(out)
    task, _, _ = training_data(cfg)
    folders = [
        out / f"{label.replace('[', '-').replace(']', '').replace(':', '')}-p{run.p}"
        for label, run in runs
    ]
    for (_, run), folder in zip(runs, folders):
        check_run_folder(run, folder)
    judges = _Judges(cfg)
    with folder_lock(out):  # one comparison per folder at a time
        before = _before(cfg, task, judges, out)

        first = hs_key(parse_specs(cfg.judge)[0][0])
        rows = [
            _row(label, run, finetune(run, folder, judges=judges), first)
            for (label, run), folder in tqdm(list(zip(runs, folders)), desc="compare")
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


def format_table(table: dict) -> str:
    """Markdown in the layout of the paper's Table 2 (landscape.asft.table), then the
    diagnostics of the harmful update against each penalty variant."""
    lines = [rows_markdown(table2_rows(table["before"], table["rows"], table["ratios"]))]
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
