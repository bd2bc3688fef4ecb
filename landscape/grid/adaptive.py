"""The adaptive EPL search (`--epl-search`): landscape.search.search_epl along each direction
through the origin, its points answered and recorded like a dense grid's.

A point is recorded once the search has decided it, keyed by its rank in the run, so a
resumed search replays the recorded points (as `known`) and computes only the rest."""

from __future__ import annotations

import zlib
from functools import partial
from statistics import NormalDist

from landscape.grid.context import RunContext
from landscape.grid.point import Answers, answer, answer_utility, joined, record_point
from landscape.search import search_epl


class _Search:
    """The search's side of the run folder: answers batches of prompts at a point, and
    records the point, all its batches together, when the search reports it finished."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.seq = len(ctx.store.done())  # the next point's key
        self.pending: list[Answers] = []  # the batches of the point being evaluated

    def _seed(self, where: str) -> int:
        return self.ctx.cfg.seed * 7919 + zlib.crc32(where.encode())

    def coords(self, ax: int, alpha: float) -> list[float]:
        c = [0.0] * len(self.ctx.dirs)
        c[ax] = alpha
        return c

    def evaluate(self, ax: int, alpha: float, batch: list[int]) -> list[bool]:
        # Seeded by where and which prompts: the same batch gets the same samples after a
        # resume.
        where = f"{ax}:{alpha!r}:{batch[0]}:{len(batch)}"
        ans = answer(self.ctx, self.coords(ax, alpha), batch, self._seed(where))
        self.pending.append(ans)
        return ans.verdicts[self.ctx.judge]

    def on_point(self, ax: int, pt: dict) -> None:
        ans, self.pending = joined(self.pending), []
        coords = self.coords(ax, pt["alpha"])
        # The utility prompts once per decided point, all of them, at its weights.
        where = f"{ax}:{pt['alpha']!r}:utility"
        ans.utility = answer_utility(self.ctx, coords, self._seed(where))
        record_point(self.ctx, [self.seq], coords, ans, pt.get("unsafe"))
        self.seq += 1

    def known(self, ax: int) -> dict[float, tuple[int, int]]:
        """The recorded points on axis `ax`: α -> (unsafe, answered)."""
        return {
            r["coords"][ax]: (r["n_unsafe"], r["n"])
            for r in self.ctx.store.done().values()
            if all(c == 0.0 for d, c in enumerate(r["coords"]) if d != ax)
        }


def run_search(ctx: RunContext) -> dict[str, dict]:
    """search_epl's result along each direction, by direction name."""
    cfg = ctx.cfg
    search = _Search(ctx)
    z = NormalDist().inv_cdf(0.5 + cfg.epl_confidence / 2)
    tau = cfg.tau
    results = {}
    for ax, name in enumerate(cfg.dirs):
        res = search_epl(
            partial(search.evaluate, ax),
            list(range(len(ctx.asked))),
            range=cfg.range,
            tol=cfg.search_tol(),
            tau=tau,
            batch=cfg.epl_batch,
            z=z,
            seed=cfg.seed,
            known=search.known(ax),
            on_point=partial(search.on_point, ax),
            show_progress=ctx.show_progress,
        )
        tau = res["tau"]  # the second direction shares the origin, and so τ
        results[name] = res
    if ctx.timing.points:
        ctx.gen.sync()  # the model is back at θ0; a backend's own copy follows it
    return results
