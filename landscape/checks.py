"""Range checks for settings: one rule for "a finite number in range", so that every option
of every config is refused the same way, before any model is loaded or any file written."""

from __future__ import annotations

import math

from landscape.errors import LandscapeError


def in_range(
    value,
    flag: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> None:
    """A one-line LandscapeError unless `value` is a finite number within the bounds given
    (ge: >=, gt: >, le: <=, lt: <). NaN fails every comparison, so it is named apart."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise LandscapeError(f"{flag} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise LandscapeError(f"{flag} must be a finite number, got {value}")
    bounds = [
        (ge, x >= ge if ge is not None else True, ">="),
        (gt, x > gt if gt is not None else True, ">"),
        (le, x <= le if le is not None else True, "<="),
        (lt, x < lt if lt is not None else True, "<"),
    ]
    wanted = [f"{op} {b:g}" for b, _, op in bounds if b is not None]
    if not all(ok for _, ok, _ in bounds):
        raise LandscapeError(f"{flag} must be {' and '.join(wanted)}, got {value}")
