"""Fine-tuning trajectories on a grid's safety landscape.

    python -m analysis.trajectory GRID_RUN FINETUNE_RUN... [--out DIR] [--measure]
                                  [--plotlyjs beside|inline|cdn]

GRID_RUN is a grid run folder (`python -m landscape.grid`), 1-D or 2-D; each FINETUNE_RUN a
fine-tuning run folder or a comparison folder made with --save-every K
(`python -m landscape.asft train|compare ... --save-every K`), started from the grid's
aligned model (a run from another model is refused).

Each snapshot's update ΔW (LoRA merged with its scaling) is projected by least squares onto
the span of the grid's directions, normalised and orthogonalised as the grid did them: α, β
and the share of ΔW off that plane (off the line for a 1-D grid). The ASR the grid predicts
there is interpolated from its points (bilinear; linear in 1-D), never extrapolated:
outside the grid it is empty and flagged `outside`. --measure also generates at every
snapshot with the grid's own prompts, judges and generation settings (one grid point each,
kept in DIR/measured/ and reused when run again) and reports the measured ASR with its
Wilson interval.

Writes into --out: table-<method>.csv and .json (step, α, β, off-plane share, predicted and
measured ASR, task loss, FA at the end), summary.json (per method: Pearson's r and the mean
absolute error of predicted against measured ASR, the off-plane share of the last updates),
trajectory.png, trajectory.pdf and trajectory.html. Bad input stops with one `error:` line
and exit status 2 before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from analysis.figures.plotlyjs import MODES
from landscape.cli import Parser, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m analysis.trajectory",
        description=__doc__.split("\n\n", 2)[-1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("grid", type=Path, metavar="GRID_RUN", help="the grid run folder")
    p.add_argument(
        "runs", nargs="+", type=Path, metavar="FINETUNE_RUN",
        help="fine-tuning run folders or comparison folders, with snapshots",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=Path("trajectory"), help="output folder (default: trajectory)"
    )
    p.add_argument(
        "--measure", action="store_true",
        help="generate at every snapshot with the grid's prompts, judges and settings",
    )  # fmt: skip
    p.add_argument(
        "--plotlyjs", default="beside", choices=MODES, help="how the page gets plotly.js"
    )
    return p.parse_args(argv)


def _fmt(x, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def report(summary: dict, out: Path) -> str:
    two_d = len(summary["dirs"]) == 2
    off = "off_plane_final" if two_d else "off_line_final"
    word = "off-plane" if two_d else "off-line"
    lines = [f"{'method':<34} {'snapshots':>9} {word:>9} {'measured':>8} {'r':>6} {'MAE':>6}"]
    for key, m in summary["methods"].items():
        lines.append(
            f"{key:<34} {m['snapshots']:>9} {_fmt(m[off], '.1%'):>9} {m['measured']:>8} "
            f"{_fmt(m['pearson'], '.2f'):>6} {_fmt(m['mae'], '.3f'):>6}"
        )
    return "\n".join(lines + [f"written to {out}"])


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its PDF font subsetting talks
    a = parse_args(argv)

    def work():
        from analysis.trajectory.build import trajectories

        return trajectories(a.grid, a.runs, a.out, measure=a.measure, plotlyjs=a.plotlyjs)

    summary = run_cli(work)
    if summary is None:
        return 2
    print(report(summary, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
