"""The ASR a grid predicts between its points: bilinear on a 2-D grid, linear on a 1-D one.

Nothing is extrapolated: a point outside the grid's range gets no prediction and the flag
`outside`; one inside whose cell lacks a finished corner gets `missing`. At a node the
prediction is that node's measured ASR exactly.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

INSIDE, OUTSIDE, MISSING = "inside", "outside", "missing"
_TOL = 1e-9  # coordinates are rounded to 10 decimals in points.jsonl


class Surface:
    """The grid's ASR at its nodes, by coordinates (one axis or two)."""

    def __init__(self, points: Sequence[dict], field: str = "asr"):
        self.dims = len(points[0]["coords"]) if points else 0
        self.axes = [sorted({float(p["coords"][i]) for p in points}) for i in range(self.dims)]
        self.values = {
            tuple(float(c) for c in p["coords"]): float(p[field])
            for p in points
            if p.get(field) is not None and not math.isnan(float(p[field]))
        }

    def _bracket(self, axis: list[float], x: float) -> list[tuple[float, float]] | None:
        """(node, weight) pairs that interpolate along one axis; None outside it."""
        span = _TOL * max(1.0, axis[-1] - axis[0])
        if x < axis[0] - span or x > axis[-1] + span:
            return None
        i = bisect.bisect_left(axis, x - span)
        if i < len(axis) and abs(axis[i] - x) <= span:  # on a node: that node alone
            return [(axis[i], 1.0)]
        lo, hi = axis[i - 1], axis[i]
        t = (x - lo) / (hi - lo)
        return [(lo, 1.0 - t), (hi, t)]

    def predict(self, coords: Sequence[float]) -> tuple[float | None, str]:
        """(predicted ASR or None, INSIDE | OUTSIDE | MISSING) at `coords`."""
        if len(coords) != self.dims:
            raise ValueError(f"{len(coords)} coordinates for a {self.dims}-D grid")
        brackets = [self._bracket(a, float(x)) for a, x in zip(self.axes, coords)]
        if any(b is None for b in brackets):
            return None, OUTSIDE
        total = 0.0
        corners = [[]]
        for b in brackets:
            corners = [c + [nw] for c in corners for nw in b]
        for corner in corners:
            key = tuple(node for node, _ in corner)
            if key not in self.values:
                return None, MISSING
            w = math.prod(weight for _, weight in corner)
            total += w * self.values[key]
        return total, INSIDE
