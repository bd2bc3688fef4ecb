"""Which table each input makes, and every table for a mix of inputs, all checked first."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from analysis.runs import is_comparison, is_grid_run
from analysis.tables.cosine import cosine_layer_table, cosine_table, samples_layout
from analysis.tables.epl import epl_shown, epl_table
from analysis.tables.hsfa import hsfa_table
from landscape.errors import LandscapeError

FLOAT_FORMATS = {
    "hsfa": "{:.2f}",  # percentages, two decimals as in the paper
    # cosines near orthogonality differ by orders of magnitude (paper Table 1)
    "cosine": "{:+.2e}",
    "cosine-samples": "{:+.2e}",
    "cosine-per-layer": "{:+.2e}",
}
DEFAULT_FORMAT = "{:.4g}"
# Tables whose Markdown shows formatted cells rather than the CSV's numbers.
SHOWN = {"epl": epl_shown}


def shown(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """The table `name` as its Markdown shows it."""
    return SHOWN[name](df) if name in SHOWN else df


def classify(path: str | Path) -> str:
    """`grid`, `comparison` or `direction`; LandscapeError for anything else."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"no such file or folder: {path}")
    if path.is_dir():
        if is_grid_run(path):
            return "grid"
        if is_comparison(path):
            return "comparison"
        raise LandscapeError(
            f"{path} is neither a grid run folder (config.json + points.jsonl) "
            "nor an AsFT comparison folder (results.csv + before.json)"
        )
    if path.suffix == ".safetensors":
        return "direction"
    raise LandscapeError(
        f"{path} is not a run folder, a comparison folder or a .safetensors direction"
    )


def _cosine_tables(dirs: list[Path], against, per_tensor: bool, per_layer: bool) -> dict:
    if against is None:
        if len(dirs) < 2:
            raise LandscapeError(
                "a cosine table needs --against or at least two .safetensors files "
                "(the first is the aligned direction)"
            )
        against, dirs = dirs[0], dirs[1:]
    # `DIR/*.safetensors --against DIR/aligned.safetensors` names the reference twice
    dirs = [d for d in dirs if d.resolve() != Path(against).resolve()]
    if not dirs:
        raise LandscapeError("--against needs at least one .safetensors direction to compare")
    tables = {"cosine": cosine_table(dirs, against)}
    by_samples = samples_layout(tables["cosine"])
    if by_samples is not None:
        tables["cosine-samples"] = by_samples
    if per_layer:
        tables["cosine-per-layer"] = cosine_layer_table(dirs, against)
    if per_tensor:
        tables["cosine-per-tensor"] = cosine_table(dirs, against, per_tensor=True)
    return tables


def build_tables(
    paths: Iterable[str | Path],
    against: str | Path | None = None,
    per_tensor: bool = False,
    judge: str | None = None,
    per_layer: bool = False,
) -> dict[str, pd.DataFrame]:
    """The tables for a mix of inputs, by name (`epl`, `hsfa`, `cosine`, `cosine-samples` when
    the directions are named `KIND-nN`, `cosine-per-layer`, `cosine-per-tensor`).
    Every input is read and checked before anything is returned."""
    kinds: dict[str, list[Path]] = {"grid": [], "comparison": [], "direction": []}
    for p in paths:
        kinds[classify(p)].append(Path(p))
    if against is not None and classify(against) != "direction":
        raise LandscapeError(f"--against must be a .safetensors direction, got {against}")
    tables = {}
    if kinds["grid"]:
        tables["epl"] = epl_table(kinds["grid"], judge=judge)
    if kinds["comparison"]:
        tables["hsfa"] = hsfa_table(kinds["comparison"])
    if kinds["direction"] or against is not None:
        tables.update(_cosine_tables(kinds["direction"], against, per_tensor, per_layer))
    return tables
