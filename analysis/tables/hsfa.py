"""HS and FA (%) per poison ratio with their averages, from AsFT comparison folders (Table 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.runs import as_list, read_comparison
from landscape.errors import LandscapeError

BEFORE_LABEL = "aligned (before)"


def _ratio(p: float) -> str:
    return f"{p:g}"


def _check(folder: Path, before: dict, res: pd.DataFrame, hs_column: str) -> None:
    for col in ("method", "p", hs_column, "fa"):
        if col not in res.columns:
            raise LandscapeError(f"{folder}/results.csv has no column {col!r}")
    if res.empty:
        raise LandscapeError(f"{folder}/results.csv has no rows")
    for key in (hs_column, "fa"):
        if before.get(key) is None:
            raise LandscapeError(f"{folder}/before.json has no {key!r}")
    dup = res.duplicated(["method", "p"])
    if dup.any():
        m, p = res.loc[dup, ["method", "p"]].iloc[0]
        raise LandscapeError(f"{folder}/results.csv has two rows for {m} at p={p}")


def _comparison_rows(folder: Path, hs_column: str) -> tuple[list[float], list[dict]]:
    """The folder's poison ratios, and one row per method: ratio -> (HS, FA) as fractions."""
    before, res = read_comparison(folder)
    _check(folder, before, res, hs_column)
    ratios = sorted(float(p) for p in res["p"].unique())
    rows = [
        {
            "method": BEFORE_LABEL,
            **{p: (float(before[hs_column]), float(before["fa"])) for p in ratios},
        }
    ]
    for method in dict.fromkeys(res["method"]):  # first-seen order, as compare wrote them
        sub = res[res["method"] == method]
        rows.append(
            {
                "method": str(method),
                **{float(r["p"]): (float(r[hs_column]), float(r["fa"])) for _, r in sub.iterrows()},
            }
        )
    return ratios, rows


def hsfa_table(compare_dirs, hs_column: str = "hs") -> pd.DataFrame:
    """Rows = methods ("aligned (before)" first, the model before fine-tuning, repeated under
    every ratio), columns `HS p=…` for each poison ratio, `HS avg`, then `FA p=…`, `FA avg`
    (the paper's Table 2 order), values in %. An average over a method missing a ratio is NaN.
    With several folders a `comparison` column (the folder name) comes first and each folder
    gets its own before row. `hs_column="hs_toy"` reports the toy judge's harmful score."""
    folders = [Path(f) for f in as_list(compare_dirs)]
    if not folders:
        raise LandscapeError("hsfa_table needs at least one comparison folder")
    parts = [_comparison_rows(f, hs_column) for f in folders]
    ratios = sorted({p for rs, _ in parts for p in rs})
    out = []
    for folder, (_, rows) in zip(folders, parts):
        for r in rows:
            row = {"comparison": folder.name} if len(folders) > 1 else {}
            row["method"] = r["method"]
            for i, metric in enumerate(("HS", "FA")):
                vals = [100.0 * r[p][i] if p in r else np.nan for p in ratios]
                for p, v in zip(ratios, vals):
                    row[f"{metric} p={_ratio(p)}"] = v
                row[f"{metric} avg"] = float(np.mean(vals))  # NaN if a ratio is missing
            out.append(row)
    return pd.DataFrame(out)
