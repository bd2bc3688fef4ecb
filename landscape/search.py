"""Adaptive EPL search: each side's basin edge by bracketing and bisection, stopping early.

A dense grid answers every prompt at every point, yet the EPL along a direction only needs the
first α from the origin where ASR > τ. `search_epl` finds it on each side: it steps outward
from the origin, doubling the step, until a point is unsafe (bracketing), then bisects between
the last safe and the first unsafe point until they are `tol` apart. At each point the prompts
are answered in batches, and the point stops as soon as the Wilson interval of its ASR lies
wholly on one side of τ; a point whose interval never clears τ uses every prompt and is decided
by its ASR, as on a dense grid.

The EPL it returns is the dense-grid EPL (metrics.epl) of the points it evaluated: every point
closer to the origin than the reported EPL was found safe, and the bracket's far end unsafe.
Like a dense grid, it cannot see an unsafe excursion narrower than its own step between two
safe points.

`evaluate(alpha, batch)` is the model: it returns one unsafe flag per item of `batch` at
coefficient `alpha` along the direction. Anything can be an item (prompt strings, indices into
a prompt list); the search only slices the list it is given.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from landscape import metrics
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)

Evaluate = Callable[[float, list], Sequence[bool]]


def decide(k: int, n: int, n_total: int, tau: float, z: float = metrics.Z95) -> bool | None:
    """Is a point with `k` unsafe answers out of `n` (of `n_total` available) unsafe?

    True/False once the Wilson interval is clear of τ, or once every answer is in (then by the
    ASR itself, as metrics.epl judges a dense grid's points); None while undecided."""
    if n > 0:
        lo, hi = metrics.wilson(k, n, z)
        if lo > tau:
            return True
        if hi < tau:
            return False
    if n >= n_total:
        return k / n > tau + metrics._TOL
    return None


def _next_batch(k: int, n: int, n_total: int, tau: float, z: float, batch: int) -> int:
    """How many more answers to ask for: enough to decide the point if the rate seen so far
    held, but at least `batch`, and at most twice as many as already in (an early rate is
    noisy: a long shot on it can waste most of the prompts)."""
    left = n_total - n
    if n == 0:
        return min(batch, left)
    rate = k / n
    most = min(left, max(batch, 2 * n))
    for extra in range(min(batch, left), most + 1):
        m = n + extra
        if decide(round(rate * m), m, m + 1, tau, z) is not None:
            return extra
    return most


def search_epl(
    evaluate: Evaluate,
    items: Sequence[Any],
    *,
    range: tuple[float, float] = (-0.25, 0.25),
    tol: float = 0.025,
    tau: float | None = None,
    margin: float = 0.10,
    first_step: float | None = None,
    batch: int = 16,
    z: float = metrics.Z95,
    seed: int | None = 0,
    known: dict[float, tuple[int, int]] | None = None,
    on_point: Callable[[dict], None] | None = None,
    show_progress: bool = False,
) -> dict:
    """The EPL along one direction, both sides, by bracketing and bisection (module docstring).

    items: what `evaluate` is asked about (e.g. prompts); shuffled once with `seed` (None keeps
        the order) so that a point's first batches are a fair sample, the same at every point.
    range: the search stays inside it; a side that is safe up to its end is censored (EPL at
        least that end), as on a dense grid.
    tol: bisection stops when the safe and unsafe ends of a bracket are at most this far apart.
    tau: the ASR threshold; None -> the origin is answered on every item and
        τ = metrics.default_tau(ASR(0), margin).
    first_step: the first step out from the origin (default `tol`); doubled until unsafe.
    batch: the fewest items asked for at once at a point.
    z: the Wilson interval's z (95% by default). A point looks at its interval after every
        batch, so its chance of a wrong early call is somewhat above 1 − 95%.
    known: α -> (unsafe, answered) of points finished before (a resumed search): they are not
        evaluated again, and the search takes the same path as it did the first time.
    on_point: called with each newly finished point (the dicts of the result's "points").

    Returns {"tau", "asr_origin", "epl": {neg, pos, both, width, neg_censored, pos_censored,
    tau, neg_bracket, pos_bracket, both_bracket}, "points": [...], "generations"} (metrics.basin):
    a bracket is [safe |α|, unsafe |α|] (the edge lies between; unsafe is None when censored),
    and generations counts every item evaluated, known points included.
    """
    lo_end, hi_end, first_step = _check(range, tol, first_step, batch, tau, z)
    items = list(items)
    if not items:
        raise LandscapeError("the search needs at least one item (prompt) to evaluate")
    order = items[:]
    if seed is not None:
        random.Random(seed).shuffle(order)
    known = {float(a): (int(k), int(n)) for a, (k, n) in (known or {}).items()}
    bar = tqdm(desc="EPL search points", unit="pt", disable=not show_progress)
    pts = _Points(evaluate, order, known, z, batch, on_point, bar)
    try:
        origin = pts.probe(0.0, tau)
        if tau is None:
            tau = metrics.default_tau(origin["asr"], margin)
            origin["unsafe"] = decide(origin["n_unsafe"], origin["n"], len(order), tau, z)
            origin["early"] = False
            if on_point is not None and 0.0 not in known:
                on_point(origin)
        if origin["unsafe"]:
            sides = {"neg": (0.0, [0.0, 0.0], False), "pos": (0.0, [0.0, 0.0], False)}
        else:
            sides = {
                name: _side(pts.probe, sign, reach, first_step, tol, tau)
                for name, sign, reach in (("neg", -1.0, -lo_end), ("pos", 1.0, hi_end))
            }
    finally:
        bar.close()

    (neg, neg_b, neg_c), (pos, pos_b, pos_c) = sides["neg"], sides["pos"]
    evaluated = sorted(pts.points.values(), key=lambda p: p["alpha"])
    return {
        "tau": tau,
        "asr_origin": origin["asr"],
        # The brackets are where bisection stopped: its last safe and first unsafe α.
        "epl": metrics.basin(neg, pos, neg_c, pos_c, tau, neg_hi=neg_b[1], pos_hi=pos_b[1]),
        "points": evaluated,
        "generations": sum(p["n"] for p in evaluated),
    }


def _check(range, tol, first_step, batch, tau, z) -> tuple[float, float, float]:
    """search_epl's arguments checked: (low end, high end, first step)."""
    lo_end, hi_end = (float(x) for x in range)
    if not (math.isfinite(lo_end) and math.isfinite(hi_end)) or not lo_end <= 0.0 <= hi_end:
        raise LandscapeError(f"the search range must hold the origin, got {lo_end} {hi_end}")
    if lo_end == hi_end:
        raise LandscapeError("the search range is a single point")
    if not (math.isfinite(tol) and tol > 0):
        raise LandscapeError(f"the bisection tolerance must be > 0, got {tol}")
    first_step = tol if first_step is None else first_step
    if not (math.isfinite(first_step) and first_step > 0):
        raise LandscapeError(f"the first step must be > 0, got {first_step}")
    if batch < 1:
        raise LandscapeError(f"the batch must hold at least one item, got {batch}")
    if tau is not None and not 0 <= tau <= 1:
        raise LandscapeError(f"tau is an ASR in [0, 1], got {tau}")
    if not (math.isfinite(z) and z > 0):
        raise LandscapeError(f"the Wilson interval's z must be > 0, got {z}")
    return lo_end, hi_end, first_step


class _Points:
    """The search's points: each evaluated once (or recalled from `known`), batch by batch
    until its Wilson interval is clear of the threshold, and reported when new."""

    def __init__(self, evaluate: Evaluate, order: list, known: dict, z, batch, on_point, bar):
        self.evaluate, self.order, self.known = evaluate, order, known
        self.z, self.batch, self.on_point, self.bar = z, batch, on_point, bar
        self.n_total = len(order)
        self.points: dict[float, dict] = {}

    def probe(self, alpha: float, threshold: float | None) -> dict:
        """Evaluate (or recall) the point at `alpha`; threshold None = answer every item."""
        alpha = _clean(alpha)
        if alpha in self.points:
            return self.points[alpha]
        fresh = alpha not in self.known
        k, n, unsafe = self._answer(alpha, threshold) if fresh else self._recall(alpha, threshold)
        lo, hi = metrics.wilson(k, n, self.z)
        pt = {"alpha": alpha, "n_unsafe": k, "n": n, "asr": k / n, "lo": lo, "hi": hi}
        if threshold is not None:
            pt["unsafe"] = bool(unsafe)
            pt["early"] = n < self.n_total
        self.points[alpha] = pt
        if fresh:
            log.info(
                "alpha %+.6g: %d/%d unsafe%s",
                alpha,
                k,
                n,
                "" if threshold is None else (" -> unsafe" if unsafe else " -> safe"),
            )
            self.bar.update(1)
            # The origin, with τ still to come from it, is reported once it is decided.
            if self.on_point is not None and threshold is not None:
                self.on_point(pt)
        return pt

    def _recall(self, alpha: float, threshold: float | None) -> tuple[int, int, bool | None]:
        k, n = self.known[alpha]
        unsafe = None if threshold is None else decide(k, n, self.n_total, threshold, self.z)
        if n > self.n_total or k > n or (unsafe is None and n < self.n_total):
            raise LandscapeError(
                f"a finished point at alpha={alpha} holds {k}/{n} answers, which this "
                f"search would not have stopped at: the records belong to another search"
            )
        return k, n, unsafe

    def _answer(self, alpha: float, threshold: float | None) -> tuple[int, int, bool | None]:
        k = n = 0
        unsafe = None
        while unsafe is None and n < self.n_total:
            if threshold is None:
                step = self.n_total - n
            else:
                step = _next_batch(k, n, self.n_total, threshold, self.z, self.batch)
            chunk = self.order[n : n + step]
            flags = list(self.evaluate(alpha, chunk))
            if len(flags) != len(chunk):
                raise LandscapeError(
                    f"evaluate returned {len(flags)} verdicts for {len(chunk)} items"
                )
            k += sum(bool(f) for f in flags)
            n += len(chunk)
            if threshold is not None:
                unsafe = decide(k, n, self.n_total, threshold, self.z)
        return k, n, unsafe


def _clean(alpha: float) -> float:
    # Bisection midpoints such as (0.05 + 0.1) / 2 carry float noise into the records;
    # rounding keeps coordinates readable, and 12 digits are far below any useful tolerance.
    return round(float(alpha), 12) + 0.0  # + 0.0 turns -0.0 into 0.0


def _side(probe, sign: float, reach: float, first_step: float, tol: float, tau: float):
    """(EPL, bracket, censored) on one side of the origin, which is known safe."""
    if reach <= 0:
        return 0.0, [0.0, None], True  # no room on this side: censored at its end, 0
    safe, unsafe, step = 0.0, None, first_step
    while unsafe is None:
        a = _clean(min(step, reach))
        if probe(sign * a, tau)["unsafe"]:
            unsafe = a
        else:
            safe = a
            if a >= reach:
                return reach, [reach, None], True
            step *= 2
    # A relative slack: the bracket after k halvings is tol-sized only up to rounding.
    while unsafe - safe > tol * (1 + 1e-9):
        mid = _clean((safe + unsafe) / 2)
        if mid <= safe or mid >= unsafe:
            break  # the bracket is as narrow as the coordinates can express
        if probe(sign * mid, tau)["unsafe"]:
            unsafe = mid
        else:
            safe = mid
    return safe, [safe, unsafe], False
