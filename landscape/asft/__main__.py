"""`python -m landscape.asft train|compare|sweep ...`: AsFT fine-tuning, before/after
comparison, and the HS–FA frontier over λ and seeds.

    python -m landscape.asft train --method asft --p 0.1 --out runs/asft
    python -m landscape.asft compare --methods sft asft safelora --poison-ratio 0.05 0.1 0.2
    python -m landscape.asft sweep --methods sft asft --controls --lams 0.01 0.1 1 --seeds 0 1 2

On a real pair (--base/--aligned), the harmful samples come from --harmful-data (and
SafeInstr's refusals from --safety-data): the built-in ones are the toy world's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from landscape.cli import Parser, add_options, from_options, run_cli

# Options that only `compare` has: what to sweep instead of one method at one ratio.
_SWEPT = ("method", "p", "anchor")  # compare sets the anchor itself (--controls)


def _parser() -> Parser:
    from landscape.asft.config import AsftConfig
    from landscape.asft.methods import METHODS

    p = Parser(
        prog="python -m landscape.asft",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="one fine-tuning run")
    t.add_argument("--out", type=Path, required=True, help="the run folder")
    add_options(t, AsftConfig)
    c = sub.add_parser(
        "compare", help="methods × poison ratios, with the aligned model as 'before'"
    )
    c.add_argument(
        "--methods",
        nargs="+",
        default=["sft", "asft", "safelora"],
        choices=METHODS,
        metavar="METHOD",
        help=f"methods to compare, of {', '.join(METHODS)} (default: %(default)s)",
    )
    c.add_argument(
        "--poison-ratio",
        nargs="+",
        type=float,
        default=[0.05, 0.1, 0.2],
        help="poison ratios p (default: %(default)s)",
    )
    c.add_argument(
        "--variants", nargs="+", help="asft penalty variants to compare (default: --variant)"
    )
    c.add_argument(
        "--controls",
        action="store_true",
        help="beside every asft variant, the isotropic control (--variant l2) and the variant "
        "anchored to a norm-matched random direction (--anchor random:SEED)",
    )
    c.add_argument(
        "--seeds", nargs="+", type=int,
        help="run everything at each of these training seeds: Table 2 of the means, and a "
        "seed table of min–max and FA's gain over the model before fine-tuning",
    )  # fmt: skip
    c.add_argument("--out", type=Path, default=Path("runs/compare"), help="the comparison's folder")
    add_options(c, AsftConfig, exclude=_SWEPT)
    s = sub.add_parser("sweep", help="methods and controls over λ and seeds: the HS–FA frontier")
    s.add_argument(
        "--methods", nargs="+", default=["sft", "asft"], choices=METHODS, metavar="METHOD",
        help=f"methods, of {', '.join(METHODS)} (default: %(default)s)",
    )  # fmt: skip
    s.add_argument(
        "--lams", nargs="+", type=float, default=[0.01, 0.1, 1.0, 10.0],
        help="λ values of the penalised methods, on --lam-scale (default: %(default)s)",
    )  # fmt: skip
    s.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds")
    s.add_argument("--variants", nargs="+", help="asft penalty variants (default: --variant)")
    s.add_argument("--controls", action="store_true", help="add l2 and random-anchor controls")
    s.add_argument("--out", type=Path, default=Path("runs/sweep"), help="the sweep's folder")
    add_options(s, AsftConfig, exclude=("method", "anchor", "lam", "seed"))
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    a = _parser().parse_args(argv)

    def work() -> str:
        from landscape.asft.compare import compare
        from landscape.asft.config import AsftConfig
        from landscape.asft.finetune import finetune
        from landscape.asft.methods import get_method
        from landscape.asft.report import format_table

        cfg = from_options(AsftConfig, a)
        if a.cmd == "sweep":
            from landscape.asft.sweep import sweep

            rows = sweep(
                cfg, a.methods, a.lams, a.seeds, a.out, a.variants or [a.variant], a.controls
            )
            return (
                f"{len(rows)} rows in {a.out / 'sweep.csv'}; the frontier: python -m "
                f"analysis.figures {a.out} --kind frontier"
            )
        if a.cmd == "train":
            r = finetune(cfg, a.out)
            lam = ""
            if get_method(cfg.method).penalty is not None:
                lam = f"   λ {cfg.lam_toolkit:g} (released code's scale: {cfg.lam_released:g})"
            snaps = ""
            if cfg.save_every:
                from landscape.asft.snapshots import FOLDER, INDEX
                from landscape.io import read_jsonl

                n = len(read_jsonl(a.out / FOLDER / INDEX))
                snaps = f"\n{n} snapshots in {a.out / FOLDER}: python -m analysis.trajectory GRID {a.out}"
            return f"HS {r['hs']:.3f}   FA {r['fa']:.3f}{lam}   ({a.out}){snaps}"
        table = compare(
            cfg,
            a.methods,
            a.poison_ratio,
            a.out,
            variants=a.variants or [a.variant],
            controls=a.controls,
            seeds=a.seeds,
        )
        return f"{format_table(table)}\nrun folder: {a.out}"

    report = run_cli(work)
    if report is None:
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
