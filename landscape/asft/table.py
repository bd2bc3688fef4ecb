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
