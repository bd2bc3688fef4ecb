"""Cosines block by block: which transformer layers two directions share."""

from __future__ import annotations

import math
import re

from landscape.directions.direction import Direction, _dot

_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The transformer block a parameter belongs to, from its name; None outside the blocks."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def cosine_per_layer(a: Direction, b: Direction) -> dict[str, float]:
    """Cosine over each transformer block's tensors together (`layer N`), and over the
    tensors outside the blocks (`other`), in block order; 0.0 where either part is zero."""
    a._same_names(b)
    sums: dict[str, list[float]] = {}
    for n, x in a.tensors.items():
        i = layer_of(n)
        key = f"layer {i}" if i is not None else "other"
        y = b.tensors[n]
        s = sums.setdefault(key, [0.0, 0.0, 0.0])
        s[0] += float(_dot(x, y))
        s[1] += float(_dot(x, x))
        s[2] += float(_dot(y, y))

    def order(k: str) -> float:
        return float(k.split()[1]) if k != "other" else math.inf

    return {
        k: (s[0] / math.sqrt(s[1] * s[2]) if s[1] > 0 and s[2] > 0 else 0.0)
        for k, s in sorted(sums.items(), key=lambda kv: order(kv[0]))
    }
