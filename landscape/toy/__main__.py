"""`python -m landscape.toy [--seed N] [--rebuild]`: build (or show) the toy pair and its numbers."""

from __future__ import annotations

import logging
import sys

from landscape.cli import Parser, run_cli
from landscape.io import read_json
from landscape.toy.build import format_metrics, toy_pair


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = Parser(prog="python -m landscape.toy", description=__doc__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebuild", action="store_true", help="build again even if cached")
    a = p.parse_args(argv)
    # a fresh build logs its numbers itself
    pair = run_cli(lambda: toy_pair(a.seed, rebuild=a.rebuild))
    if pair is None:
        return 2
    print(format_metrics(read_json(pair.metrics)))
    print(f"base: {pair.base}\naligned: {pair.aligned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
