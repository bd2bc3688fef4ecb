"""The safety landscape: ASR of the aligned model perturbed over a 1-D or 2-D grid of directions.

`python -m landscape.grid --dirs aligned harm` runs on the built-in toy pair; `run_grid`
is the same thing for a notebook. A killed run resumes where it stopped when the same
command is given again on the same `--out` folder.

`--shard I/N` runs shard I (counted from 0) of N: the grid's points in row-major order, every
N-th one from the I-th. `python -m landscape.grid merge RUN... --out MERGED` joins the N shard
folders into the run folder a single process would have made.

`--epl-search` finds each direction's EPL by bracketing and bisection instead of a dense grid
(landscape.search), stopping each point once the Wilson interval of its ASR is clear of τ.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from landscape.cli import Parser, add_options, from_options, run_cli
from landscape.grid.config import GridConfig
from landscape.grid.run import run_grid
from landscape.grid.shards import merge_runs
from landscape.grid.summary import format_summary
from landscape.judges.options import JudgeOptions

_JUDGE_OPTIONS = tuple(f.name for f in dataclasses.fields(JudgeOptions))


def default_out(cfg: GridConfig) -> Path:
    """runs/grid-DIRS, runs/epl-DIRS for a search, runs/grid-DIRS-shard-I-of-N for a shard."""
    name = "-".join(x.replace(":", "") for x in cfg.dirs)
    if cfg.epl_search:
        name = "epl-" + name
    elif cfg.shard:
        name = f"grid-{name}-shard-{cfg.shard.replace('/', '-of-')}"
    else:
        name = "grid-" + name
    return Path("runs") / name


def parse_args(argv: list[str] | None) -> tuple[GridConfig, Path]:
    p = Parser(
        prog="python -m landscape.grid",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, GridConfig, exclude=_JUDGE_OPTIONS)
    add_options(p.add_argument_group("judges"), JudgeOptions)
    p.add_argument("--out", type=Path, help="run folder (default: runs/grid-DIRS)")
    ns = p.parse_args(argv)
    cfg = from_options(GridConfig, ns)
    return cfg, ns.out if ns.out is not None else default_out(cfg)


def _report(summary: dict | None, out: Path) -> int:
    if summary is None:
        return 2
    print(format_summary(summary))
    print(f"run folder: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    cfg, out = parse_args(argv)
    if cfg.plan:  # the memory plan only (landscape.grid.workers)
        from landscape.grid.workers import plan_text

        text = run_cli(lambda: plan_text(cfg))
        if text is None:
            return 2
        print(text)
        return 0
    return _report(run_cli(lambda: run_grid(cfg, out)), out)


def merge_main(argv: list[str]) -> int:
    p = Parser(
        prog="python -m landscape.grid merge",
        description="Join the folders of all N shards of one grid (`--shard I/N` runs) into the "
        "run folder a single process would have made.",
    )
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="shard run folders")
    p.add_argument("--out", type=Path, required=True, help="merged run folder (must not exist)")
    a = p.parse_args(argv)
    return _report(run_cli(lambda: merge_runs(a.runs, a.out)), a.out)


if __name__ == "__main__":
    sys.exit(main())
