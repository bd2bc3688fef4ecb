"""figures/make.py's plans, toy and SmolLM2: every step's command line is accepted by the
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
    finally:
        sys.path.remove(str(FIGURES))
    runs = Path("/nonexistent/runs")
    return [("toy", s) for s in make.steps(runs)] + [("smollm2", s) for s in smollm2.steps(runs)]


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
        assert f"SmolLM2 1-D: {d}" in names
    assert "SmolLM2 AsFT vs SFT and controls" in names
    compare = next(s for p, s in PLANS if s.name == "SmolLM2 AsFT vs SFT and controls")
    assert "--controls" in compare.args
