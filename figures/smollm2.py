"""The SmolLM2 safety pair's part of the figures: `python figures/make.py --smollm2`.

The pair is SmolLM2-135M-Instruct (base) and the same model safety-aligned by
`python -m landscape.align`; the harm and benign directions come from its full fine-tunes.
Every step is one of the project's own commands in a child process (see make.py); run
folders go to `--runs`, the figures and tables to figures/smollm2/.
"""

from __future__ import annotations

from pathlib import Path

from make import REPO, Step, run_plan

HERE = Path(__file__).resolve().parent / "smollm2"
DATA = REPO.parent / "shared" / "data"
DIRECTIONS = ("aligned", "harm", "benign", "random")
# The pair's own scale: the aligned model is 0.0019 of the weights' norm from the base
# (median per tensor 0.0018), the harmful fine-tune 0.0012 from the aligned one, and along
# the layer-normalised harm direction every answer of this 135M model is already broken at
# |α| = 0.05 (measured: 16 of 16 at both ±0.05, none harmful), so the field's range
# (21 points on [-0.5, 0.5]) would only show a broken model. 21 points on [-0.005, 0.005]
# put the base and the harmful fine-tune's distance inside the range; the basin edges by
# adaptive search, every direction at the same scale.
FINE = ["--range", "-0.005", "0.005", "--steps", "21", "--epl-search"]
# The random control also ten times wider: a basin that reaches 0.005 along random says
# little until it is seen to reach much further.
ONE_D = ["--range", "-0.05", "0.05", "--steps", "21", "--epl-search"]
COARSE_DIRECTIONS = ("random",)
# The aligned × harm plane at the same scale (the harmful fine-tune's own distance inside).
TWO_D = ["--range", "-0.005", "0.005", "--steps", "5", "--n-prompts", "40"]
GEN = ["--max-new-tokens", "48", "--batch-size", "16"]
# One epoch over 400 samples (50 steps of LoRA r = 8 on q/v, the toolkit's defaults otherwise),
# so that four fine-tunes and their evaluations fit the time budget on 2 cores.
ASFT = ["--methods", "sft", "asft", "--controls", "--poison-ratio", "0.1", "--n", "400",
        "--epochs", "1", "--max-len", "128"]  # fmt: skip


def steps(runs: Path, data: Path = DATA) -> list[Step]:
    r = lambda *parts: str(Path(runs, *parts))  # noqa: E731
    pair = Path(runs, "smollm2-pair")
    models = [
        "--base", str(pair / "base"), "--aligned", str(pair / "aligned"),
        "--harmful", str(pair / "finetune-harmful"), "--benign", str(pair / "finetune-benign"),
    ]  # fmt: skip
    prompts = ["--prompts", str(pair / "eval" / "harmful.jsonl")]
    s = [
        Step(
            "SmolLM2 pair",
            [
                "-m",
                "landscape.align",
                "--advbench",
                str(data / "advbench" / "harmful_behaviors.csv"),
                "--harmbench",
                str(data / "harmbench" / "harmbench_behaviors_text_test.csv"),
                "--out",
                str(pair),
                "--finetunes",
                "harmful",
                "benign",
            ],  # fmt: skip
            "SmolLM2-135M-Instruct aligned by the toolkit, its harmful and benign fine-tunes",
        )
    ]
    for d in COARSE_DIRECTIONS:
        s.append(
            Step(
                f"SmolLM2 1-D: {d}",
                [
                    "-m",
                    "landscape.grid",
                    "--dirs",
                    d,
                    *models,
                    *prompts,
                    *ONE_D,
                    *GEN,
                    "--out",
                    r(f"smollm2-{d}"),
                ],  # fmt: skip
                f"basin edges along {d} to ±0.05 (adaptive search, 80 held-out prompts)",
            )
        )
    for d in DIRECTIONS:
        s.append(
            Step(
                f"SmolLM2 1-D fine: {d}",
                [
                    "-m",
                    "landscape.grid",
                    "--dirs",
                    d,
                    *models,
                    *prompts,
                    *FINE,
                    *GEN,
                    "--out",
                    r(f"smollm2-{d}-fine"),
                ],  # fmt: skip
                f"basin edges along {d} at the pair's own scale (step 0.0005, 80 prompts)",
            )
        )
    s.append(
        Step(
            "SmolLM2 2-D: aligned × harm",
            [
                "-m",
                "landscape.grid",
                "--dirs",
                "aligned",
                "harm",
                *models,
                *prompts,
                *TWO_D,
                *GEN,
                "--out",
                r("smollm2-aligned-harm"),
            ],  # fmt: skip
            "5 × 5 points on [-0.005, 0.005]², 40 held-out prompts each",
        )
    )
    arith = Path(runs, "smollm2-arith")
    s += [
        Step(
            "SmolLM2 task: arithmetic",
            ["-m", "landscape.align.arith", "--out", str(arith)],
            "500 + 100 English arithmetic word problems (GSM8K's answer format)",
        ),
        Step(
            "SmolLM2 AsFT vs SFT and controls",
            [
                "-m",
                "landscape.asft",
                "compare",
                "--base",
                str(pair / "base"),
                "--aligned",
                str(pair / "aligned"),
                "--task",
                f"{arith / 'train.jsonl'},{arith / 'test.jsonl'}",
                "--harmful-data",
                str(pair / "train" / "harmful.jsonl"),
                "--eval-prompts",
                str(pair / "eval" / "harmful.jsonl"),
                *ASFT,
                "--out",
                r("smollm2-asft"),
            ],  # fmt: skip
            "HS/FA of SFT, AsFT and its isotropic and random-anchor controls at p = 0.1",
        ),
    ]
    dirs = r("smollm2-directions")
    for kind, source in (("aligned", []), ("harm", ["--source", str(pair / "finetune-harmful")]),
                         ("benign", ["--source", str(pair / "finetune-benign")]),
                         ("random", [])):  # fmt: skip
        s.append(
            Step(
                f"SmolLM2 direction: {kind}",
                [
                    "-m",
                    "landscape.directions",
                    "save",
                    kind,
                    "--base",
                    str(pair / "base"),
                    "--aligned",
                    str(pair / "aligned"),
                    *source,
                    "--out",
                    str(Path(dirs, f"{kind}.safetensors")),
                ],  # fmt: skip
                f"the {kind} direction over the blocks",
                "run",
            )
        )
    tables = str(HERE / "tables")
    s += [
        Step(
            "SmolLM2 tables: EPL",
            [
                "-m",
                "analysis.tables",
                *(r(f"smollm2-{d}-fine") for d in DIRECTIONS),
                *(r(f"smollm2-{d}") for d in COARSE_DIRECTIONS),
                r("smollm2-aligned-harm"),
                "--out",
                tables,
            ],  # fmt: skip
            "`smollm2/tables/epl.*` (Table 7 layout, brackets)",
            "table",
        ),
        Step(
            "SmolLM2 tables: cosines",
            [
                "-m",
                "analysis.tables",
                *(str(Path(dirs, f"{k}.safetensors")) for k in DIRECTIONS),
                "--per-layer",
                "--out",
                tables,
            ],  # fmt: skip
            "`smollm2/tables/cosine.*` (Table 1 layout), per layer",
            "table",
        ),
        Step(
            "SmolLM2 figure: 1-D curves",
            [
                "-m",
                "analysis.figures",
                *(r(f"smollm2-{d}-fine") for d in DIRECTIONS),
                "--kind",
                "curve",
                "--out",
                str(HERE),
            ],  # fmt: skip
            "`smollm2/curves.{png,pdf}`: ASR along four directions with Wilson bands",
            "figure",
        ),
        Step(
            "SmolLM2 figure: outcomes",
            [
                "-m",
                "analysis.figures",
                *(r(f"smollm2-{d}-fine") for d in DIRECTIONS),
                *(r(f"smollm2-{d}") for d in COARSE_DIRECTIONS),
                "--kind",
                "outcomes",
                "--out",
                str(HERE),
            ],  # fmt: skip
            "`smollm2/smollm2-*-outcomes.{png,pdf}`: refused / complied / incoherent shares",
            "figure",
        ),
        Step(
            "SmolLM2 figure: 2-D landscape",
            ["-m", "analysis.figures", r("smollm2-aligned-harm"), "--out", str(HERE)],
            "`smollm2/smollm2-aligned-harm-*.{png,pdf}`, `.html`",
            "figure",
        ),
    ]
    return s


def main(runs: Path, log_dir: Path, env: dict) -> int:
    intro = [
        "The SmolLM2 safety pair: SmolLM2-135M-Instruct and the same model aligned by",
        "`python -m landscape.align`, measured by the project's own commands on CPU. Made by",
        "",
        "    python figures/make.py --smollm2",
    ]
    return run_plan(HERE, "figures/smollm2/", intro, steps(runs), log_dir, env)
