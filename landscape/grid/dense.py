"""The dense grid: every point of cfg.axes() (or of one shard of them) not yet in the run
folder, in row-major order."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from landscape.grid.config import GridConfig, parse_shard
from landscape.grid.context import RunContext
from landscape.grid.point import answer, record_point


def grid_points(axes: list[np.ndarray]) -> list[tuple[int, ...]]:
    """Every point's key (its indices along the axes), row-major."""
    return [tuple(int(i) for i in k) for k in np.ndindex(*(len(a) for a in axes))]


def shard_points(axes: list[np.ndarray], shard: str | None) -> list[tuple[int, ...]]:
    """The grid points a shard runs, in run order: every N-th point (row-major) from the I-th.
    Dealt out in turn, so that each shard gets its share of the far, slow corners."""
    keys = grid_points(axes)
    if shard is None:
        return keys
    i, n = parse_shard(shard)
    return keys[i::n]


def point_seed(cfg: GridConfig, key: tuple[int, ...]) -> int:
    """A seed per point, fixed by its grid indices: sampled answers are the same whether the
    point is computed in a fresh run, after a resume or in a shard."""
    return cfg.seed * 7919 + sum(k * 104729**j for j, k in enumerate(key))


def run_dense(ctx: RunContext) -> None:
    """Every point of the grid (of the shard) not yet in the folder."""
    cfg = ctx.cfg
    axes = cfg.axes()
    done = ctx.store.done()
    mine = shard_points(axes, cfg.shard)
    todo = [k for k in mine if k not in done]
    everyone = list(range(len(ctx.asked)))
    for key in tqdm(
        todo,
        desc="grid points",
        disable=not ctx.show_progress,
        initial=len(mine) - len(todo),
        total=len(mine),
    ):
        coords = [float(a[i]) for a, i in zip(axes, key)]
        ans = answer(ctx, coords, everyone, point_seed(cfg, key), utility=True)
        record_point(ctx, key, coords, ans)
    if todo:
        # The model is back at θ0; a backend holding its own copy of the weights follows it.
        ctx.gen.sync()
