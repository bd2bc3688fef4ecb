"""The safety landscape: ASR of the aligned model perturbed over a 1-D or 2-D grid of
directions (`python -m landscape.grid`, or `run_grid` from Python).

The files follow a run's data flow:
- `config`: `GridConfig` (the settings, which are also the command line's options), its
  checks, and `run_config`, what config.json records;
- `run`: `run_grid`: load the pair, `build_directions`, then the dense grid or the search;
- `context`: the `RunContext` that the stages below share;
- `point`: one point: perturb, generate, judge, and its point and generation records;
- `dense`: the dense grid and its shards; `adaptive`: the EPL search (landscape.search);
- `summary`: summary.json (EPL by metrics.landscape_summary) and its text form;
- `shards`: `merge_runs`, the shards of a grid joined into the single-process run;
- `__main__`: the two command lines, `python -m landscape.grid [merge]`.
"""

from landscape.grid.config import (
    DIRECTION_KINDS,
    NORMS,
    GridConfig,
    config_from,
    parse_shard,
    run_config,
)
from landscape.grid.context import RunContext, Timing
from landscape.grid.dense import grid_points, shard_points
from landscape.grid.run import build_directions, run_grid
from landscape.grid.shards import merge_runs
from landscape.grid.summary import format_summary, judge_agreement, summarize, summarize_search

_CLI = ("main", "merge_main", "parse_args", "default_out")


def __getattr__(name: str):
    # The command lines live in __main__, imported only when asked for: importing it here
    # would make `python -m landscape.grid` find it loaded twice.
    if name in _CLI:
        from landscape.grid import __main__ as cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DIRECTION_KINDS",
    "NORMS",
    "GridConfig",
    "RunContext",
    "Timing",
    "build_directions",
    "config_from",
    "default_out",
    "format_summary",
    "grid_points",
    "judge_agreement",
    "main",
    "merge_main",
    "merge_runs",
    "parse_args",
    "parse_shard",
    "run_config",
    "run_grid",
    "shard_points",
    "summarize",
    "summarize_search",
]
