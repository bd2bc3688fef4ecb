"""Regenerate every toy-world figure and table in this folder, end to end.

    python figures/make.py                      # uses (and fills) the toy cache
    LANDSCAPE_CACHE=$(mktemp -d) python figures/make.py   # from an empty cache, as timed

Each step is one of the project's own commands, run in a child process; run folders go to
`--runs` (default `runs/figures/`), so a killed run resumes where it stopped when started
again. The figures and tables are written here, small records of every run are copied to
`runs/` beside them, and `README.md` is rewritten with each file, the command that made it and
the time each step took.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SAMPLES = [10, 20, 50, 100, 200, 500]
LAMBDAS = ["0", "0.1", "1", "10", "100"]
LRS = ["3e-4", "1e-3", "3e-3"]
GSM8K = ["--task", "toy:gsm8k", "--p", "0.1", "--variant", "flat+one-sided"]


@dataclass
class Step:
    name: str
    args: list[str]  # after `python`
    outputs: str  # what it makes, for the README
    kind: str = "run"  # run | figure | table


def steps(runs: Path) -> list[Step]:
    r = lambda *parts: str(Path(runs, *parts))  # noqa: E731
    one_d = ["--range", "-0.5", "0.5", "--steps", "21"]
    s = [
        Step("toy pair", ["-m", "landscape.toy"], "the base/aligned toy pair (cache)"),
        Step(
            "2-D grid: aligned × harm",
            ["-m", "landscape.grid", "--dirs", "aligned", "harm", "--out", r("toy-aligned-harm")],
            "the default run (its `landscape.png` is `toy-aligned-harm.png`)",
        ),
    ]
    for d in ("aligned", "harm", "benign", "random"):
        s.append(
            Step(
                f"1-D grid: {d}",
                ["-m", "landscape.grid", "--dirs", d, *one_d, "--out", r(f"toy-{d}")],
                f"ASR along {d}, 21 points on [-0.5, 0.5]",
            )
        )
    s.append(
        Step(
            "directions by sample count",
            [
                "-m",
                "landscape.directions",
                "samples",
                "--samples",
                *map(str, SAMPLES),
                "--out",
                r("directions"),
            ],
            "aligned direction, harmful directions from fine-tunes on N samples, random ones",
        )
    )
    s.append(
        Step(
            "AsFT comparison: toy:sst2",
            [
                "-m",
                "landscape.asft",
                "compare",
                "--task",
                "toy:sst2",
                "--methods",
                "sft",
                "asft",
                "asft-alt",
                "safelora",
                "safeinstr",
                "--poison-ratio",
                "0.05",
                "0.1",
                "0.2",
                "--out",
                r("compare-sst2"),
            ],
            "HS/FA of five methods at three poison ratios",
        )
    )
    s.append(
        Step(
            "AsFT comparison: toy:gsm8k",
            [
                "-m",
                "landscape.asft",
                "compare",
                "--task",
                "toy:gsm8k",
                "--methods",
                "sft",
                "asft",
                "safelora",
                "--poison-ratio",
                "0.1",
                "--out",
                r("compare-gsm8k"),
            ],
            "HS/FA where fine-tuning has accuracy to gain",
        )
    )
    for lam in LAMBDAS:
        s.append(
            Step(
                f"λ sweep: λ={lam}",
                [
                    "-m",
                    "landscape.asft",
                    "train",
                    "--method",
                    "asft",
                    *GSM8K,
                    "--lam",
                    lam,
                    "--out",
                    r("lambda", "toy-gsm8k", f"asft-lam{lam}"),
                ],
                "one AsFT run of the λ sweep",
            )
        )
    for method in ("sft", "asft"):
        for lr in LRS:
            s.append(
                Step(
                    f"lr sweep: {method} lr={lr}",
                    [
                        "-m",
                        "landscape.asft",
                        "train",
                        "--method",
                        method,
                        *GSM8K,
                        "--lr",
                        lr,
                        "--out",
                        r("lr", "toy-gsm8k", f"{method}-lr{lr}"),
                    ],
                    "one run of the learning-rate sweep",
                )
            )
    tables = str(HERE / "tables")
    directions = [r("directions", "aligned.safetensors")] + [
        r("directions", f"{k}-n{n}.safetensors") for k in ("harm", "random") for n in SAMPLES
    ]
    s += [
        Step(
            "tables: EPL, HS/FA",
            [
                "-m",
                "analysis.tables",
                r("toy-aligned-harm"),
                *(r(f"toy-{d}") for d in ("aligned", "harm", "benign", "random")),
                r("compare-sst2"),
                r("compare-gsm8k"),
                "--out",
                tables,
            ],
            "`tables/epl.*` (paper Table 7 layout, VISAGE beside it), "
            "`tables/hsfa.*` (paper Tables 2–6 layout)",
            "table",
        ),
        Step(
            "tables: cosines",
            ["-m", "analysis.tables", *directions, "--per-layer", "--out", tables],
            "`tables/cosine.*`, `tables/cosine-samples.*` (paper Table 1 layout), "
            "`tables/cosine-per-layer.*`",
            "table",
        ),
        Step(
            "figure: 1-D curves",
            [
                "-m",
                "analysis.figures",
                *(r(f"toy-{d}") for d in ("aligned", "harm", "benign", "random")),
                "--kind",
                "curve",
                "--out",
                str(HERE),
            ],
            "`curves.{png,pdf}`: ASR along four directions, Wilson 95% bands (paper Fig. 1a)",
            "figure",
        ),
        Step(
            "figure: 2-D landscape",
            ["-m", "analysis.figures", r("toy-aligned-harm"), "--out", str(HERE)],
            "`toy-aligned-harm-contour.{png,pdf}` (basin outlined at τ), "
            "`toy-aligned-harm-surface.{png,pdf}`, `toy-aligned-harm.html` (plotly, hover answers)",
            "figure",
        ),
        Step(
            "figure: λ sweep",
            [
                "-m",
                "analysis.figures",
                r("lambda", "toy-gsm8k"),
                "--kind",
                "lambda",
                "--out",
                str(HERE),
            ],
            "`toy-gsm8k-lambda.{png,pdf}`: HS and FA against λ (paper Fig. 4a/b)",
            "figure",
        ),
        Step(
            "figure: learning-rate robustness",
            ["-m", "analysis.figures", r("lr", "toy-gsm8k"), "--kind", "lr", "--out", str(HERE)],
            "`toy-gsm8k-lr.{png,pdf}`: HS and FA against the learning rate (paper Fig. 4c)",
            "figure",
        ),
    ]
    return s


def trajectory_steps(runs: Path) -> list[Step]:
    """Fine-tuning trajectories on the toy landscapes: SFT, AsFT with its two controls and
    the baselines on toy:gsm8k at three seeds, snapshots every 10 steps, placed and measured
    on the aligned × harm plane and on the same plane at a twenty-fifth of its range, and
    placed on the 1-D harm curve. Needs the grids of `steps` (`toy-aligned-harm`,
    `toy-harm`) in `runs`."""
    r = lambda *parts: str(Path(runs, *parts))  # noqa: E731
    compare = r("compare-gsm8k-trajectory")
    return [
        Step(
            "AsFT comparison with snapshots: toy:gsm8k, 3 seeds",
            [
                "-m",
                "landscape.asft",
                "compare",
                "--task",
                "toy:gsm8k",
                "--methods",
                "sft",
                "asft",
                "safelora",
                "safeinstr",
                "--controls",
                "--poison-ratio",
                "0.1",
                "--seeds",
                "0",
                "1",
                "2",
                "--save-every",
                "10",
                "--out",
                compare,
            ],
            "SFT, AsFT (with its l2 and random-anchor controls), Safe LoRA and SafeInstr, "
            "snapshots every 10 optimizer steps",
        ),
        Step(
            "trajectories on aligned × harm, measured",
            [
                "-m",
                "analysis.trajectory",
                r("toy-aligned-harm"),
                compare,
                "--measure",
                "--out",
                str(HERE / "trajectory-aligned-harm"),
            ],
            "`trajectory-aligned-harm/`: tables per method, summary.json, trajectory.{png,pdf,html}",
            "figure",
        ),
        Step(
            "2-D grid: aligned × harm, fine",
            [
                "-m",
                "landscape.grid",
                "--dirs",
                "aligned",
                "harm",
                "--range",
                "-0.01",
                "0.01",
                "--out",
                r("toy-aligned-harm-fine"),
            ],
            "the default plane at a twenty-fifth of its range (step 0.002), where the "
            "fine-tunes' in-plane coordinates lie",
        ),
        Step(
            "trajectories on the fine aligned × harm plane, measured",
            [
                "-m",
                "analysis.trajectory",
                r("toy-aligned-harm-fine"),
                compare,
                "--measure",
                "--out",
                str(HERE / "trajectory-aligned-harm-fine"),
            ],
            "`trajectory-aligned-harm-fine/`: the same snapshots on the fine plane",
            "figure",
        ),
        Step(
            "trajectories on the harm line",
            [
                "-m",
                "analysis.trajectory",
                r("toy-harm"),
                compare,
                "--out",
                str(HERE / "trajectory-harm"),
            ],
            "`trajectory-harm/`: the snapshots on the 1-D harm curve (predicted ASR only)",
            "figure",
        ),
    ]


def trajectories(runs: Path, log_dir: Path, env: dict) -> list[float]:
    """Run `trajectory_steps` (after the toy steps have made their grids); the seconds of
    each step."""
    seconds = []
    plan = trajectory_steps(runs)
    for i, step in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {step.name}: {command_text(step)}", flush=True)
        seconds.append(run_step(step, log_dir, env))
        print(f"    {seconds[-1]:.0f} s", flush=True)
    return seconds


def command_text(step: Step) -> str:
    def short(a: str) -> str:
        try:  # paths relative to the repository, as a reader would type them
            return str(Path(a).resolve().relative_to(REPO)) if "/" in a else a
        except ValueError:
            return a

    return "python " + " ".join(shlex.quote(short(a)) for a in step.args)


def run_step(step: Step, log_dir: Path, env: dict) -> float:
    log = log_dir / (step.name.replace(" ", "_").replace("/", "-").replace(":", "") + ".log")
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.call(
            [sys.executable, *step.args], cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT
        )
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        sys.exit(f"step {step.name!r} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))
    return seconds


def _done(step: Step) -> bool:
    """Whether a run step's work is already in its `--out` (a killed or repeated run then only
    checks it), so that its time of record stays the one of the run that did the work."""
    if step.kind != "run" or "--out" not in step.args:
        return False
    out = Path(step.args[step.args.index("--out") + 1])
    marks = ("summary.json", "metrics.json", "table.md", "test.jsonl", "sweep.csv")
    return out.is_file() or any((out / m).exists() for m in marks)


def run_plan(
    folder: Path,
    title: str,
    intro: list[str],
    plan: list[Step],
    log_dir: Path,
    env: dict,
    records: tuple[Path, list[str]] | None = None,
) -> int:
    """Run a plan whose outputs live in `folder` (a part of the figures with a README of its
    own): each step in turn, then `folder/README.md` with every command and its seconds and
    `folder/timing.json`. A step already done keeps the seconds of the run that did it.
    `records`: (runs folder, run names) whose small records are copied to `folder/runs/`."""
    folder.mkdir(exist_ok=True)
    record = folder / "timing.json"
    before = json.loads(record.read_text())["steps"] if record.exists() else {}
    seconds, earlier = [], set()
    for i, step in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {step.name}: {command_text(step)}", flush=True)
        done = _done(step)
        sec = run_step(step, log_dir, env)
        print(f"    {sec:.0f} s", flush=True)
        if done and step.name in before:
            sec = before[step.name]
            earlier.add(step.name)
        seconds.append(sec)
    lines = [
        f"# {title}",
        "",
        *intro,
        "",
        f"Work in all: {sum(seconds) / 60:.1f} min on {os.cpu_count()} CPU cores; load "
        f"average {os.getloadavg()[0]:.2f} at the end of the last run. Each step's seconds are "
        "those of the run that did its work (* : an earlier run; the last one found it done).",
        "",
        "| step | command | seconds | makes |",
        "|---|---|---:|---|",
    ]
    for step, sec in zip(plan, seconds):
        mark = " *" if step.name in earlier else ""
        lines.append(f"| {step.name} | `{command_text(step)}` | {sec:.0f}{mark} | {step.outputs} |")
    (folder / "README.md").write_text("\n".join(lines) + "\n")
    timing = {"steps": {s.name: round(t, 1) for s, t in zip(plan, seconds)}}
    record.write_text(
        json.dumps({**timing, "total_seconds": round(sum(seconds), 1)}, indent=2) + "\n"
    )
    if records is not None:
        copy_records(*records, folder / "runs")
    return 0


RECORDS = (
    "toy-aligned-harm",
    "toy-aligned",
    "toy-harm",
    "toy-benign",
    "toy-random",
    "compare-sst2",
    "compare-gsm8k",
    "lambda",
    "lr",
)


def copy_records(runs: Path, names=RECORDS, dest: Path = HERE / "runs") -> None:
    """Small records of the runs `names` beside the figures: grid config/summary/points,
    fine-tuning config/result, comparison tables. Models, adapters and generations stay in
    `runs`."""
    keep = {
        "config.json",
        "summary.json",
        "points.jsonl",
        "env.json",
        "timing.json",
        "result.json",
        "results.csv",
        "before.json",
        "diagnostics.json",
        "table.md",
    }
    for name in names:
        src = runs / name
        if (dest / name).exists():
            shutil.rmtree(dest / name)
        for f in sorted(src.rglob("*")):
            if f.is_file() and f.name in keep:
                target = dest / name / f.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


def write_readme(plan: list[Step], seconds: list[float], fresh_cache: bool) -> None:
    total = sum(seconds)
    load = os.getloadavg()[0]
    lines = [
        "# figures/",
        "",
        "Toy-world results, made by this project's commands on CPU. They are **not** the paper's",
        "results: the toy pair is a 1.1M-parameter model trained on a synthetic language, and",
        "its judge is the keyword list (with the toy world's own classifier beside it).",
        "",
        "Every file named in the table below is made by one command (it also copies the small",
        "records of every run into `runs/` here):",
        "",
        "    python figures/make.py",
        "",
        f"Last full run: {total / 60:.1f} min on {os.cpu_count()} CPU cores"
        + (
            " from an empty cache (toy pair built from scratch)"
            if fresh_cache
            else " (toy pair already cached)"
        )
        + f"; load average {load:.2f} at the end. Steps and times:",
        "",
        "| step | command | seconds | makes |",
        "|---|---|---:|---|",
    ]
    for step, sec in zip(plan, seconds):
        lines.append(f"| {step.name} | `{command_text(step)}` | {sec:.0f} | {step.outputs} |")
    lines += [
        "",
        "Run folders go to `runs/figures/` (not committed); `runs/` here keeps their small",
        "records (config, summary, points, results) so the tables and figures can be remade",
        "with `python -m analysis.tables` / `python -m analysis.figures` without re-running.",
        "The configuration of each run is its `config.json` there; defaults are those of",
        "`python -m landscape.grid --help` and `python -m landscape.asft train --help`.",
        "",
        "The HTML file loads plotly.js from `plotly.min.js` beside it (plotly's own bundled",
        "copy, written by `analysis.figures`), so the folder opens in a browser offline.",
        "",
        "## Made by make.py's other plans",
        "",
        "| folder | made by |",
        "|---|---|",
        "| `smollm2/` | `python figures/make.py --smollm2`: the SmolLM2 safety pair (its README "
        "lists each step and its time) |",
        "| `controls/` | `python figures/make.py --controls`: AsFT and its controls on three toy "
        "pairs, the λ frontiers, the seven Table 2 rows (README with times) |",
        "| `coherence/` | `python figures/make.py --coherence`: outcomes, utility and fine edges on "
        "three toy pairs (README with times) |",
        "| `trajectory-aligned-harm/`, `trajectory-aligned-harm-fine/`, `trajectory-harm/` | "
        "`python figures/make.py --trajectories` (after this plan): fine-tuning snapshots on the "
        "planes and the harm line; the pages and measured answers are remade, not kept |",
        "",
        "## Made by the README's AsFT section (not by make.py)",
        "",
        "| file | made by |",
        "|---|---|",
        "| `asft-toy/` | `python -m landscape.asft compare --methods sft asft asft-alt safelora "
        "safeinstr --variants safelora subspace:8 flat flat+one-sided subspace:8+one-sided "
        "--poison-ratio 0.05 0.1 0.2` (task `toy:sst2`): `table.md`, `results.csv`, "
        "`diagnostics.json`, `before.json`; its runs in `runs/compare-toy/` |",
        "| `asft-toy-gsm8k/` | the same with `--task toy:gsm8k --methods sft asft safelora "
        "safeinstr --variants safelora flat flat+one-sided`; its runs in "
        "`runs/compare-toy-gsm8k/` |",
        "",
        "## Made by the tests (not by make.py)",
        "",
        "| file | made by |",
        "|---|---|",
        "| `report.png` | the browser test's screenshot of a run report (`report.html`) in "
        "headless Chromium, offline, after clicking a point: a tiny random model's 5 × 5 "
        "grid, judged by a made-up refusal list so that its ASR varies, with readable and "
        "hostile answers planted at the clicked point. `LANDSCAPE_REPORT_SCREENSHOT=figures/"
        "report.png python -m pytest tests/integration/test_report_browser.py -k click` |",
    ]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python figures/make.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--runs",
        type=Path,
        default=REPO / "runs" / "figures",
        help="folder for the run folders (default: runs/figures)",
    )
    p.add_argument(
        "--smollm2",
        action="store_true",
        help="the SmolLM2 safety pair's part instead (figures/smollm2/, about an hour on 2 cores)",
    )
    p.add_argument(
        "--trajectories",
        action="store_true",
        help="the fine-tuning trajectories instead (figures/trajectory-*/; needs the toy grids)",
    )
    p.add_argument(
        "--controls",
        action="store_true",
        help="AsFT against its controls on three toy pairs, the λ frontiers and the seven "
        "Table 2 rows instead (figures/controls/)",
    )
    p.add_argument(
        "--coherence",
        action="store_true",
        help="basin edges with coherence and utility on three toy pairs, and the fine edges, "
        "instead (figures/coherence/)",
    )
    a = p.parse_args(argv)
    runs = a.runs.resolve()
    log_dir = runs / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    if a.smollm2:
        import smollm2

        return smollm2.main(runs, log_dir, env)
    if a.controls or a.coherence:
        import pairs

        return pairs.main("controls" if a.controls else "coherence", runs, log_dir, env)
    if a.trajectories:
        trajectories(runs, log_dir, env)
        return 0
    sys.path.insert(0, str(REPO))
    from landscape.toy.build import _root

    fresh_cache = not (_root(0) / "pair" / "metrics.json").exists()
    plan = steps(runs)
    seconds = []
    t_all = time.perf_counter()
    for i, step in enumerate(plan, 1):
        print(f"[{i}/{len(plan)}] {step.name}: {command_text(step)}", flush=True)
        sec = run_step(step, log_dir, env)
        seconds.append(sec)
        print(f"    {sec:.0f} s", flush=True)
    default_png = runs / "toy-aligned-harm" / "landscape.png"
    shutil.copy2(default_png, HERE / "toy-aligned-harm.png")
    copy_records(runs)
    write_readme(plan, seconds, fresh_cache)
    (HERE / "timing.json").write_text(
        json.dumps(
            {
                "total_seconds": time.perf_counter() - t_all,
                "fresh_cache": fresh_cache,
                "cpu_count": os.cpu_count(),
                "load_average_end": os.getloadavg()[0],
                "steps": {s.name: round(t, 1) for s, t in zip(plan, seconds)},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"done in {(time.perf_counter() - t_all) / 60:.1f} min; see {HERE / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
