"""`python -m landscape.align --advbench FILE [--harmbench FILE] [--model M] [--out DIR]`:
safety-align a causal LM (default: SmolLM2-135M-Instruct) into a base/aligned pair folder,
or show the pair already built for these settings; `--finetunes harmful benign` also makes
the aligned model's fine-tunes that the grid's `harm` and `benign` directions are read from."""

from __future__ import annotations

import logging
import sys

from landscape.align.build import align
from landscape.align.config import AlignConfig
from landscape.align.evaluate import format_metrics
from landscape.align.finetune import KINDS, finetune
from landscape.cli import Parser, add_options, from_options, run_cli
from landscape.io import read_json


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = Parser(prog="python -m landscape.align", description=__doc__)
    add_options(p, AlignConfig)
    p.add_argument(
        "--out", help="the pair folder (default: a folder of these settings in the cache)"
    )
    p.add_argument(
        "--finetunes",
        nargs="+",
        default=[],
        choices=KINDS,
        help="also make these fine-tunes of the aligned model (for --harmful/--benign)",
    )
    a = p.parse_args(argv)
    finetunes = a.__dict__.pop("finetunes")

    def work():
        pair = align(from_options(AlignConfig, a), a.out)
        return pair, {k: finetune(pair.root, k) for k in finetunes}

    done = run_cli(work)
    if done is None:
        return 2
    pair, made = done
    print(format_metrics(read_json(pair.metrics)))
    print(f"base: {pair.base}\naligned: {pair.aligned}\nheld-out prompts: {pair.root / 'eval'}")
    for kind, folder in made.items():
        print(f"{kind} fine-tune: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
