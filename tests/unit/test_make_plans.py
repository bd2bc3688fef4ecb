"""figures/make.py's plans, toy, SmolLM2 and the toy pairs': every step's command line is accepted by the
parser of the command it runs (a renamed or misspelt option fails here, not an hour into a
run). Parsing only: nothing is built."""

import importlib
import runpy
import sys
from pathlib import Path

import pytest

from landscape.cli import Parser

FIGURES = Path(__file__).resolve().parents[2] / "figures"


class Parsed(Exception):
    pass


def _plans():
    sys.path.insert(0, str(FIGURES))
    try:
        make, smollm2 = importlib.import_module("make"), importlib.import_module("smollm2")
        pairs = importlib.import_module("pairs")
    finally:
        sys.path.remove(str(FIGURES))
    runs = Path("/nonexistent/runs")
    return (
        [("toy", s) for s in make.steps(runs)]
        + [("smollm2", s) for s in smollm2.steps(runs)]
        + [("controls", s) for s in pairs.controls_steps(runs)]
        + [("coherence", s) for s in pairs.coherence_steps(runs)]
    )


PLANS = _plans()


@pytest.mark.parametrize("plan,step", PLANS, ids=[f"{p}:{s.name}" for p, s in PLANS])
def test_step_parses(plan, step, monkeypatch):
    args = step.args
    assert args[0] == "-m", f"{step.name}: a step runs a module"
    real = Parser.parse_args

    def parse_then_stop(self, argv=None, namespace=None):
        real(self, argv, namespace)
        raise Parsed

    monkeypatch.setattr(Parser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [args[1], *args[2:]])
    with pytest.raises(Parsed):
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)


def test_the_smollm2_plan_has_the_issue_measurements():
    names = [s.name for p, s in PLANS if p == "smollm2"]
    for d in ("aligned", "harm", "benign", "random"):
        assert f"SmolLM2 1-D fine: {d}" in names
    assert "SmolLM2 AsFT vs SFT and controls" in names
    compare = next(s for p, s in PLANS if s.name == "SmolLM2 AsFT vs SFT and controls")
    assert "--controls" in compare.args


def test_the_pair_plans_cover_three_pairs():
    """The toy results over pair seeds: every pair seed gets the controls and each direction's
    coherence and utility run; the seven Table 2 rows are all asked for."""
    names = {p: [s.name for q, s in PLANS if q == p] for p in ("controls", "coherence")}
    for n in (0, 1, 2):
        assert f"controls: toy:gsm8k, pair {n}" in names["controls"]
        for d in ("aligned", "harm", "benign", "random"):
            assert f"1-D with utility: {d}, pair {n}" in names["coherence"]
    table2 = next(s for p, s in PLANS if s.name == "Table 2, seven rows: toy:gsm8k")
    methods = table2.args[table2.args.index("--methods") + 1 :]
    for m in ("sft", "lisa-base", "lisa-aligned", "safeinstr", "bea", "safelora", "asft"):
        assert m in methods
