"""Tables as files: CSV at full precision, a Markdown pipe table, a LaTeX booktabs tabular.

Both text formats are written here rather than through pandas' `to_markdown`/`to_latex`, so
that neither tabulate nor jinja2 is needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from landscape.io import atomic_write


def _cell(v, float_format: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating):
        return float_format.format(float(v))
    return str(v)


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    if isinstance(df.index, pd.RangeIndex) and df.index.name is None:
        return df
    return df.reset_index()


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def table_cells(
    df: pd.DataFrame, float_format: str = "{:.4g}"
) -> tuple[list[str], list[list[str]]]:
    """(column names, rows of cell text) as the Markdown table shows them (for HTML pages)."""
    df = _flat(df)
    return [str(c) for c in df.columns], [
        [_cell(v, float_format) for v in row] for row in df.itertuples(index=False)
    ]


def to_markdown(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A pipe table (numbers right-aligned)."""
    df = _flat(df)

    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(esc(str(c)) for c in df.columns) + " |",
        "|" + "|".join("---:" if _numeric(df[c]) else "---" for c in df.columns) + "|",
    ]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(_cell(v, float_format)) for v in row) + " |")
    return "\n".join(lines)


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A booktabs tabular (needs \\usepackage{booktabs})."""
    df = _flat(df)
    spec = "".join("r" if _numeric(df[c]) else "l" for c in df.columns)
    lines = [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(_tex_escape(str(c)) for c in df.columns) + " \\\\",
        "\\midrule",
    ]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(_tex_escape(_cell(v, float_format)) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines)


def write(
    df: pd.DataFrame,
    out_stem: str | Path,
    float_format: str = "{:.4g}",
    shown: pd.DataFrame | None = None,
) -> list[Path]:
    """Write `out_stem.csv` (full precision), `.md` and `.tex`, each atomically; returns the
    three paths. `shown`: what the Markdown shows instead of `df` (formatted cells)."""
    stem = Path(out_stem)
    flat = _flat(df)
    texts = (
        flat.to_csv(index=False),
        to_markdown(flat if shown is None else _flat(shown), float_format) + "\n",
        to_latex(flat, float_format) + "\n",
    )
    return [
        atomic_write(stem.with_name(stem.name + ext), text)
        for ext, text in zip((".csv", ".md", ".tex"), texts)
    ]
