"""HS and FA (%) per poison ratio with their averages, from AsFT comparison folders (Table 2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.runs import as_list, read_comparison
from landscape.asft.table import mean_rows, table2_rows
from landscape.errors import LandscapeError


def _check(folder: Path, before: dict, res: pd.DataFrame, hs_column: str) -> None:
    for col in ("method", "p", hs_column, "fa"):
        if col not in res.columns:
            raise LandscapeError(f"{folder}/results.csv has no column {col!r}")
    if res.empty:
        raise LandscapeError(f"{folder}/results.csv has no rows")
    for key in (hs_column, "fa"):
        if before.get(key) is None:
            raise LandscapeError(f"{folder}/before.json has no {key!r}")
    dup = res.duplicated(["method", "p", *(["seed"] if "seed" in res.columns else [])])
    if dup.any():
        m, p = res.loc[dup, ["method", "p"]].iloc[0]
        raise LandscapeError(f"{folder}/results.csv has two rows for {m} at p={p}")


def hsfa_table(compare_dirs, hs_column: str = "hs") -> pd.DataFrame:
    """The paper's Table 2 (landscape.asft.table: its one definition) for each comparison
    folder. With several folders a `comparison` column (the folder name) comes first, each
    folder gets its own before row, and all share the union of their ratios.
    `hs_column="hs_toy"` reports the toy judge's harmful score."""
    folders = [Path(f) for f in as_list(compare_dirs)]
    if not folders:
        raise LandscapeError("hsfa_table needs at least one comparison folder")
    parts = []
    for folder in folders:
        before, res = read_comparison(folder)
        _check(folder, before, res, hs_column)
        recs = res.to_dict("records")
        if "seed" in res.columns and res["seed"].nunique() > 1:
            recs = mean_rows(recs)  # Table 2 of the means over seeds
        parts.append((folder, before, recs))
    ratios = sorted({float(r["p"]) for _, _, recs in parts for r in recs})
    out = []
    for folder, before, recs in parts:
        for row in table2_rows(before, recs, ratios, hs_column):
            out.append({"comparison": folder.name, **row} if len(folders) > 1 else row)
    return pd.DataFrame(out)
