"""Cosines between saved directions: globally, per tensor, per block (paper Table 1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis.runs import as_list
from landscape.errors import LandscapeError


def _direction(item, what: str):
    from landscape.directions import Direction

    if isinstance(item, Direction):
        return item
    path = Path(item)
    if path.suffix != ".safetensors":
        raise LandscapeError(f"{what}: {path} is not a .safetensors direction file")
    return Direction.load(path)


def _label(item, i: int) -> str:
    if isinstance(item, str | Path):
        return Path(item).stem
    meta = getattr(item, "meta", {}) or {}
    return str(meta.get("name") or meta.get("kind") or f"direction {i + 1}")


def _items(directions, what: str) -> list[tuple[str, object]]:
    """(label, file or Direction) pairs from a mapping or a list."""
    if isinstance(directions, Mapping):
        items = list(directions.items())
    else:
        items = [(_label(d, i), d) for i, d in enumerate(as_list(directions))]
    if not items:
        raise LandscapeError(f"{what} needs at least one direction")
    return items


_SAMPLES = re.compile(r"^(?P<kind>.+)-n(?P<n>\d+)$")


def samples_layout(df: pd.DataFrame) -> pd.DataFrame | None:
    """The paper's Table 1 layout of a global cosine table whose labels read `KIND-nN` (as
    `python -m landscape.directions samples` names its files): one row per kind, one column
    per sample count N. None when some label does not follow that pattern."""
    parsed = [_SAMPLES.match(str(label)) for label in df["direction"]]
    if not parsed or not all(parsed):
        return None
    long = pd.DataFrame(
        {
            "direction": [m["kind"] for m in parsed],
            "samples": [int(m["n"]) for m in parsed],
            "cosine": df["cosine"].to_numpy(),
        }
    )
    if long.duplicated(["direction", "samples"]).any():
        return None
    wide = long.pivot(index="direction", columns="samples", values="cosine")
    wide = wide.reindex(list(dict.fromkeys(long["direction"])))  # kinds in input order
    wide.columns = [f"n={n}" for n in wide.columns]
    return wide.reset_index()


def cosine_layer_table(directions, against) -> pd.DataFrame:
    """Cosine between `against` and each direction per transformer block (all of a block's
    tensors together): one row per block (`layer N`, then `other` for tensors outside the
    blocks), one column per direction."""
    from landscape.directions import cosine_per_layer

    items = _items(directions, "cosine_layer_table")
    ref = _direction(against, "against")
    cols = {
        str(label): cosine_per_layer(ref, _direction(item, str(label))) for label, item in items
    }
    layers = list(next(iter(cols.values())))
    return pd.DataFrame({"layer": layers, **{k: [v[x] for x in layers] for k, v in cols.items()}})


def cosine_table(directions, against, per_tensor: bool = False) -> pd.DataFrame:
    """Cosine between `against` (the aligned direction) and each of `directions`.

    `directions`: `.safetensors` files saved with `Direction.save` (labelled by file name
    without the suffix), `Direction`s (labelled by meta `name` or `kind`), or a mapping
    label -> file or Direction; `against`: a file or a Direction. Returns columns
    `direction`, `cosine` (global, over all tensors), or with `per_tensor` a long frame
    `direction`, `tensor`, `cosine` (0.0 where a tensor is all zero)."""
    items = _items(directions, "cosine_table")
    ref = _direction(against, "against")
    rows = []
    for label, item in items:
        d = _direction(item, str(label))
        if per_tensor:
            rows += [
                {"direction": str(label), "tensor": n, "cosine": c}
                for n, c in ref.cosine_per_tensor(d).items()
            ]
        else:
            rows.append({"direction": str(label), "cosine": ref.cosine(d)})
    return pd.DataFrame(rows)
