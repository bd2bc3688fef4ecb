"""Before/after comparison: methods × poison ratios, HS and FA in the layout of the paper's
Table 2, with the diagnostics that say whether the paper's premise holds here."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from landscape import directions as D
from landscape.asft.data import load_task
from landscape.asft.finetune import (
    AsftConfig,
    _alt_variant,
    _pair,
    _target_names,
    aligned_direction,
    evaluate,
    finetune,
    harmful_direction,
)
from landscape.models import load_model

log = logging.getLogger(__name__)


def _label(method: str, variant: str | None) -> str:
    return f"{method}[{variant}]" if variant else method


def _runs(cfg: AsftConfig, methods, ratios, variants):
    alt = sorted({_alt_variant(v) for v in variants})  # AsFT-Alt penalises inside; one per subspace
    for method in methods:
        for variant in {"asft": variants, "asft-alt": alt}.get(method, [None]):
            for p in ratios:
                run = dataclasses.replace(cfg, method=method, p=p, variant=variant or cfg.variant)
                yield _label(method, variant), run


def diagnostics(cfg: AsftConfig, variants: list[str]) -> dict:
    """cos(d_aligned, d_harm), the signed component of d_harm along d_aligned, and the share of
    d_harm's energy inside each variant's allowed subspace, with a random direction beside it."""
    from landscape.asft.penalty import diagnostics as share

    _, aligned_path = _pair(cfg)
    model, _ = load_model(aligned_path, dtype="float32", device="cpu")
    names = _target_names(model, cfg.target_modules)
    d_al = aligned_direction(cfg, model, names)
    d_harm = harmful_direction(cfg, model, names)
    d_rand = D.random(model, names, seed=cfg.seed).normalized("layer", model)
    out = {"cos_aligned_harm": d_al.cosine(d_harm), "cos_aligned_random": d_al.cosine(d_rand),
           "cos_aligned_harm_per_tensor": d_al.cosine_per_tensor(d_harm), "variants": {}}
    for v in variants:
        out["variants"][v] = {"harm": share(d_harm, d_al, v), "random": share(d_rand, d_al, v)}
    return out


def compare(cfg: AsftConfig, methods: list[str], ratios: list[float], out: str | Path,
            variants: list[str]) -> dict:
    """Run every (method, variant, p) into `out/<label>-p<p>/` (finished runs are reused), and
    write `results.csv`, `diagnostics.json` and `table.md`."""
    out = Path(out)
    runs = list(_runs(cfg, methods, ratios, variants))
    for _, run in runs:  # all bad input is caught before any work starts
        run.validate()
    load_task(cfg.task, cfg.seed)
    out.mkdir(parents=True, exist_ok=True)

    before_path = out / "before.json"
    if before_path.exists():
        before = json.loads(before_path.read_text())
    else:
        _, aligned_path = _pair(cfg)
        model, tok = load_model(aligned_path, dtype=cfg.dtype, device=cfg.device)
        before = evaluate(model, tok, load_task(cfg.task, cfg.seed), cfg)
        before_path.write_text(json.dumps(before, indent=2, sort_keys=True) + "\n")

    rows = []
    for label, run in tqdm(runs, desc="compare"):
        r = finetune(run, out / f"{label.replace('[', '-').replace(']', '').replace(':', '')}-p{run.p}")
        rows.append({"method": label, "p": run.p, "hs": r["hs"], "fa": r["fa"], "hs_toy": r.get("hs_toy"),
                     "lam": run.lam, "lr": run.lr, "train_seconds": r["train_seconds"]})
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    diag = diagnostics(cfg, sorted({v for _, r in runs if r.method == "asft" for v in [r.variant]}) or [cfg.variant])
    (out / "diagnostics.json").write_text(json.dumps(diag, indent=2, sort_keys=True) + "\n")
    table = {"before": before, "rows": rows, "ratios": ratios, "diagnostics": diag}
    (out / "table.md").write_text(format_table(table) + "\n")
    return table


def format_table(table: dict) -> str:
    """Markdown in the layout of the paper's Table 2: HS and FA (%) per poison ratio, averages."""
    ratios = table["ratios"]
    head = "| method | " + " | ".join(f"HS p={p} | FA p={p}" for p in ratios) + " | HS avg | FA avg |"
    lines = [head, "|" + "---|" * (2 * len(ratios) + 3)]
    b = table["before"]
    lines.append("| aligned (before) | " + " | ".join(f"{100 * b['hs']:.1f} | {100 * b['fa']:.1f}" for _ in ratios)
                 + f" | {100 * b['hs']:.1f} | {100 * b['fa']:.1f} |")
    methods = list(dict.fromkeys(r["method"] for r in table["rows"]))
    for m in methods:
        by_p = {r["p"]: r for r in table["rows"] if r["method"] == m}
        cells = [f"{100 * by_p[p]['hs']:.1f} | {100 * by_p[p]['fa']:.1f}" for p in ratios]
        hs = sum(by_p[p]["hs"] for p in ratios) / len(ratios)
        fa = sum(by_p[p]["fa"] for p in ratios) / len(ratios)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {100 * hs:.1f} | {100 * fa:.1f} |")
    d = table.get("diagnostics")
    if d:
        lines += ["", f"cos(d_aligned, d_harm) = {d['cos_aligned_harm']:+.4f}   "
                      f"(a random direction: {d['cos_aligned_random']:+.4f})", "",
                  "| variant | harmful update: share allowed | random: share allowed | harmful: signed ⟨d̂, Δ⟩/‖Δ‖ | harmful: share against d |",
                  "|---|---|---|---|---|"]
        for v, s in d["variants"].items():
            h, r = s["harm"], s["random"]
            lines.append(f"| {v} | {h['allowed_share']:.4f} | {r['allowed_share']:.4f} | "
                         f"{h['along_share']:+.4f} | {h['against_share']:.4f} |")
    return "\n".join(lines)
