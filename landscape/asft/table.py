"""The paper's Table 2, defined once: rows of methods ("aligned (before)" first, the model
before fine-tuning, repeated under every ratio), columns `HS p=…` for each poison ratio,
`HS avg`, then `FA p=…`, `FA avg`, values in %. `python -m landscape.asft compare` writes it
as table.md; `analysis.tables` builds its CSV/Markdown/LaTeX from the same rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

BEFORE_LABEL = "aligned (before)"


def ratio_label(p: float) -> str:
    return f"{float(p):g}"


def table2_rows(
    before: dict,
    results: Sequence[dict],
    ratios: Sequence[float] | None = None,
    hs_column: str = "hs",
) -> list[dict]:
    """One row per method in first-seen order, from `before` (the aligned model's `hs`/`fa`)
    and `results` (records with `method`, `p`, `hs_column` and `fa`, as fractions). `ratios`
    default to those of `results`; a method without a ratio gets NaN there and in its
    averages."""
    ratios = (
        sorted({float(r["p"]) for r in results}) if ratios is None else [float(p) for p in ratios]
    )
    by_method: dict[str, dict[float, tuple[float, float]]] = {
        BEFORE_LABEL: {p: (float(before[hs_column]), float(before["fa"])) for p in ratios}
    }
    for r in results:
        by_method.setdefault(str(r["method"]), {})[float(r["p"])] = (
            float(r[hs_column]),
            float(r["fa"]),
        )
    rows = []
    for method, cells in by_method.items():
        row: dict = {"method": method}
        for i, metric in enumerate(("HS", "FA")):
            vals = [100.0 * cells[p][i] if p in cells else math.nan for p in ratios]
            for p, v in zip(ratios, vals):
                row[f"{metric} p={ratio_label(p)}"] = v
            # NaN when a ratio is missing: an average over fewer ratios is not comparable
            row[f"{metric} avg"] = sum(vals) / len(vals) if vals else math.nan
        rows.append(row)
    return rows


def rows_markdown(rows: Sequence[dict], digits: int = 1) -> str:
    """A Markdown pipe table of `table2_rows` (numbers to `digits` places, NaN left blank)."""
    if not rows:
        return ""
    cols = list(rows[0])

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---" if c == "method" else "---:" for c in cols) + "|",
    ]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _key(r: dict) -> tuple[str, float]:
    return str(r["method"]), float(r["p"])


def mean_rows(rows: Sequence[dict]) -> list[dict]:
    """One record per (method, p), in first-seen order, with `hs`, `fa` and every `hs_*`
    averaged over the records (the seeds) and `n_seeds` their number: the input of
    `table2_rows` for a comparison over several seeds."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for (method, p), rs in groups.items():
        keys = ["hs", "fa", *sorted({k for r in rs for k in r if k.startswith("hs_")})]
        rec = {"method": method, "p": p, "n_seeds": len(rs)}
        for k in keys:
            vals = [float(r[k]) for r in rs if r.get(k) is not None]
            rec[k] = sum(vals) / len(vals) if vals else math.nan
        out.append(rec)
    return out


def seed_spread(befores: dict[int, dict], rows: Sequence[dict], z: float = 1.96) -> list[dict]:
    """Per (method, p): HS and FA as mean, min and max over seeds (fractions), n the number
    of seeds, and FA's gain over the model before fine-tuning (each seed against its own
    before evaluation). The gain is flagged `gain_within_noise` when its seeds' range holds
    0, or when its mean is smaller than the half-width of a 95% interval of the before
    FA over its `n_fa` test answers (a single seed has no range to show)."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault(_key(r), []).append(r)
    out = []
    for (method, p), rs in groups.items():
        rec: dict = {"method": method, "p": p, "n": len(rs)}
        for k in ("hs", "fa"):
            vals = [float(r[k]) for r in rs]
            rec |= {
                f"{k}_mean": sum(vals) / len(vals),
                f"{k}_min": min(vals),
                f"{k}_max": max(vals),
            }
        gains = [float(r["fa"]) - float(befores[r["seed"]]["fa"]) for r in rs]
        b = befores[rs[0]["seed"]]
        n_fa = b.get("n_fa") or 0
        half = z * math.sqrt(b["fa"] * (1 - b["fa"]) / n_fa) if n_fa else math.inf
        mean = sum(gains) / len(gains)
        rec |= {"fa_gain_mean": mean, "fa_gain_min": min(gains), "fa_gain_max": max(gains)}
        spans_zero = len(gains) > 1 and min(gains) <= 0 <= max(gains)
        rec["gain_within_noise"] = spans_zero or abs(mean) < half
        out.append(rec)
    return out


def spread_markdown(spread: Sequence[dict]) -> str:
    """The seed table: HS and FA in % as mean [min–max] over n seeds, and FA's gain over
    the model before fine-tuning, `≈` where that gain is within noise."""
    lines = [
        "| method | p | n | HS % mean [min–max] | FA % mean [min–max] | FA gain (points) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in spread:
        hs, fa = (
            f"{100 * r[k + '_mean']:.1f} [{100 * r[k + '_min']:.1f}–{100 * r[k + '_max']:.1f}]"
            for k in ("hs", "fa")
        )
        gain = (
            f"{100 * r['fa_gain_mean']:+.1f} "
            f"[{100 * r['fa_gain_min']:+.1f}, {100 * r['fa_gain_max']:+.1f}]"
        )
        flag = " ≈" if r["gain_within_noise"] else ""
        lines.append(f"| {r['method']} | {r['p']:g} | {r['n']} | {hs} | {fa} | {gain}{flag} |")
    return "\n".join(lines)
