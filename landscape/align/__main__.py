"""`python -m landscape.align --advbench FILE [--harmbench FILE] [--model M] [--out DIR]`:
safety-align a causal LM (default: SmolLM2-135M-Instruct) into a base/aligned pair folder,
or show the pair already built for these settings."""

from __future__ import annotations

import logging
import sys

from landscape.align.build import align
from landscape.align.config import AlignConfig
from landscape.align.evaluate import format_metrics
from landscape.cli import Parser, add_options, from_options, run_cli
from landscape.io import read_json


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = Parser(prog="python -m landscape.align", description=__doc__)
    add_options(p, AlignConfig)
    p.add_argument(
        "--out", help="the pair folder (default: a folder of these settings in the cache)"
    )
    a = p.parse_args(argv)
    pair = run_cli(lambda: align(from_options(AlignConfig, a), a.out))
    if pair is None:
        return 2
    print(format_metrics(read_json(pair.metrics)))
    print(f"base: {pair.base}\naligned: {pair.aligned}\nheld-out prompts: {pair.root / 'eval'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
