"""Toy results over three independently trained pairs (pair seeds 0, 1, 2):

    python figures/make.py --controls    # AsFT against its controls, the λ frontiers, Table 2
    python figures/make.py --coherence   # basin edges with coherence and usefulness, fine EPL

One toy pair is one draw: the same seed trains a different pair on another CPU of this kind,
and arithmetic accuracy alone varies from 0.38 to 0.84 between pair seeds. Each plan runs the
project's own commands in child processes (see make.py); run folders go to `--runs`, the
tables and figures to figures/controls/ and figures/coherence/.
"""

from __future__ import annotations

from pathlib import Path

from make import HERE as FIGURES
from make import Step, run_plan

PAIRS = (0, 1, 2)
SEEDS = ["--seeds", "0", "1", "2"]
TASKS = ("gsm8k", "sst2", "agnews")
LAMS = ["--lams", "0.01", "0.1", "1"]
# The paper's seven Table 2 rows (AsFT with the toolkit's default variant).
BASELINES = ["sft", "lisa-base", "lisa-aligned", "safeinstr", "bea", "safelora", "asft"]
DIRECTIONS = ("aligned", "harm", "benign", "random")
ONE_D = ["--range", "-0.5", "0.5", "--steps", "21"]
# Ten times the coarse grid's resolution near the origin, where most edges of the coarse
# grid lie below its first step; the adaptive search keeps it affordable.
FINE = ["--range", "-0.1", "0.1", "--steps", "41", "--epl-search"]
UTILITY = ["--utility-prompts", "toy:gsm8k"]


def _pair(n: int) -> list[str]:
    return ["--pair-seed", str(n)]


def controls_steps(runs: Path) -> list[Step]:
    r = lambda *parts: str(Path(runs, *parts))  # noqa: E731
    out = FIGURES / "controls"
    s = []
    for n in PAIRS:
        s.append(
            Step(
                f"controls: toy:gsm8k, pair {n}",
                [
                    "-m",
                    "landscape.asft",
                    "compare",
                    "--task",
                    "toy:gsm8k",
                    "--methods",
                    "sft",
                    "asft",
                    "--poison-ratio",
                    "0.1",
                    "--controls",
                    *SEEDS,
                    *_pair(n),
                    "--out",
                    r(f"controls-gsm8k-pair{n}"),
                ],
                "SFT, AsFT and its isotropic and random-anchor controls at three training seeds",
            )
        )
    s.append(
        Step(
            "controls: toy:sst2, pair 0",
            [
                "-m",
                "landscape.asft",
                "compare",
                "--task",
                "toy:sst2",
                "--methods",
                "sft",
                "asft",
                "--poison-ratio",
                "0.1",
                "--controls",
                *SEEDS,
                "--out",
                r("controls-sst2"),
            ],
            "the same on the sentiment task",
        )
    )
    for t in TASKS:
        # On arithmetic, where fine-tuning has a gain to lose, the methods without a λ join
        # the frontier as points (one per seed).
        others = BASELINES[1:-1] if t == "gsm8k" else []
        s.append(
            Step(
                f"frontier sweep: toy:{t}",
                [
                    "-m",
                    "landscape.asft",
                    "sweep",
                    "--task",
                    f"toy:{t}",
                    "--p",
                    "0.1",
                    "--methods",
                    "sft",
                    "asft",
                    *others,
                    "--controls",
                    *LAMS,
                    "--seeds",
                    "0",
                    "1",
                    "--out",
                    r(f"sweep-{t}"),
                ],
                "AsFT and its controls over λ ∈ {0.01, 0.1, 1} at two seeds, SFT beside them",
            )
        )
    for t in ("gsm8k", "sst2"):
        s.append(
            Step(
                f"Table 2, seven rows: toy:{t}",
                [
                    "-m",
                    "landscape.asft",
                    "compare",
                    "--task",
                    f"toy:{t}",
                    "--poison-ratio",
                    "0.05",
                    "0.1",
                    "0.2",
                    *SEEDS,
                    "--methods",
                    *BASELINES,
                    "--out",
                    r(f"baselines-{t}"),
                ],
                "the paper's Table 2 rows (Lisa-base, Lisa-aligned, BEA among them) at three "
                "poison ratios and three seeds",
            )
        )
    s.append(
        Step(
            "figure: frontiers",
            [
                "-m",
                "analysis.figures",
                *(r(f"sweep-{t}") for t in TASKS),
                "--kind",
                "frontier",
                "--out",
                str(out),
            ],
            "`controls/sweep-*-frontier.{png,pdf}`: HS against FA per method through λ",
            "figure",
        )
    )
    return s


def coherence_steps(runs: Path) -> list[Step]:
    r = lambda *parts: str(Path(runs, *parts))  # noqa: E731
    out = FIGURES / "coherence"
    s = []
    for n in PAIRS:
        s.append(
            Step(
                f"plane with utility: pair {n}",
                [
                    "-m",
                    "landscape.grid",
                    "--dirs",
                    "aligned",
                    "harm",
                    *UTILITY,
                    *_pair(n),
                    "--out",
                    r(f"useful-plane-pair{n}"),
                ],
                "the default 11 × 11 plane with outcomes and arithmetic accuracy at every point",
            )
        )
        for d in DIRECTIONS:
            s.append(
                Step(
                    f"1-D with utility: {d}, pair {n}",
                    [
                        "-m",
                        "landscape.grid",
                        "--dirs",
                        d,
                        *ONE_D,
                        *UTILITY,
                        *_pair(n),
                        "--out",
                        r(f"useful-{d}-pair{n}"),
                    ],
                    f"21 points along {d} with outcomes and arithmetic accuracy",
                )
            )
        for d in ("aligned", "harm"):
            s.append(
                Step(
                    f"fine edges: {d}, pair {n}",
                    [
                        "-m",
                        "landscape.grid",
                        "--dirs",
                        d,
                        *FINE,
                        *_pair(n),
                        "--out",
                        r(f"fine-{d}-pair{n}"),
                    ],
                    f"the basin edges along {d} to 0.005 (adaptive search)",
                )
            )
    useful = [r(f"useful-{d}-pair{n}") for n in PAIRS for d in DIRECTIONS]
    planes = [r(f"useful-plane-pair{n}") for n in PAIRS]
    fine = [r(f"fine-{d}-pair{n}") for n in PAIRS for d in ("aligned", "harm")]
    s += [
        Step(
            "tables: edges, coherence, utility",
            ["-m", "analysis.tables", *useful, *planes, *fine, "--out", str(out / "tables")],
            "`coherence/tables/epl.*`: raw, coherent and competence edges, utility per run",
            "table",
        ),
        Step(
            "figures: outcomes and panels",
            ["-m", "analysis.figures", *useful, *planes, "--kind", "auto", "--out", str(out)],
            "`coherence/*-outcomes.{png,pdf}` per run, `*-panels.{png,pdf}` per plane",
            "figure",
        ),
    ]
    return s


def main(which: str, runs: Path, log_dir: Path, env: dict) -> int:
    if which == "controls":
        intro = [
            "AsFT against its isotropic (l2) and random-anchor controls on three toy pairs,",
            "its HS–FA frontier over λ on the three toy tasks, and the paper's seven Table 2",
            "rows, at three training seeds. Made by",
            "",
            "    python figures/make.py --controls",
        ]
        names = [f"controls-gsm8k-pair{n}" for n in PAIRS] + ["controls-sst2"]
        names += [f"sweep-{t}" for t in TASKS] + ["baselines-gsm8k", "baselines-sst2"]
        folder = FIGURES / "controls"
        plan = controls_steps(runs)
        return run_plan(folder, "figures/controls/", intro, plan, log_dir, env, (runs, names))
    intro = [
        "Basin edges of three toy pairs along four directions with every answer labelled",
        "refused, complied or incoherent, arithmetic accuracy at every point, and the edges",
        "along aligned and harm to a step of 0.005. Made by",
        "",
        "    python figures/make.py --coherence",
    ]
    names = [f"useful-{d}-pair{n}" for n in PAIRS for d in ("plane", *DIRECTIONS)]
    names += [f"fine-{d}-pair{n}" for n in PAIRS for d in ("aligned", "harm")]
    folder = FIGURES / "coherence"
    plan = coherence_steps(runs)
    return run_plan(folder, "figures/coherence/", intro, plan, log_dir, env, (runs, names))
