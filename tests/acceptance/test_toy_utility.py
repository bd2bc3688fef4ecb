"""Usefulness on the toy pair: `--utility-prompts toy:gsm8k` writes the toy task's accuracy and
benign refusal rate at every point (graded by the toy world's own checker), the summary's
safe-and-useful region holds the origin, and a killed run resumes to the same bytes."""

from __future__ import annotations

import json

import pytest

from landscape.grid import main
from landscape.io import read_jsonl
from landscape.utility import load_utility

ARGS = ["--dirs", "aligned", "harm", "--steps", "3", "--n-prompts", "16",
        "--utility-prompts", "toy:gsm8k", "--n-utility", "20"]  # fmt: skip
FILES = ("config.json", "points.jsonl", "generations.jsonl", "summary.json", "calibration.json")


@pytest.mark.slow
def test_a_toy_grid_with_gsm8k_utility_resumes_to_the_same_bytes(toy_cache, tmp_path):
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    whole = {n: (out / n).read_bytes() for n in FILES}

    points = read_jsonl(out / "points.jsonl")
    assert len(points) == 9 and all(p["utility"]["n"] == 20 for p in points)
    task = load_utility("toy:gsm8k", n=20)
    gold = dict(zip(task.prompts, task.references))
    benign = [g for g in read_jsonl(out / "generations.jsonl") if g.get("set") == "utility"]
    assert len(benign) == 9 * 20
    for g in benign:  # the toy world's checker: the number after "The final answer is:"
        assert g["correct"] == task.grade(g["answer"], gold[g["prompt"]])
    origin = next(p for p in points if p["coords"] == [0.0, 0.0])
    assert origin["utility"]["accuracy"]["share"] > 0.2  # the aligned pair does arithmetic
    s = json.loads((out / "summary.json").read_text())["utility"]
    assert (
        s["measure"] == "accuracy" and s["utility_origin"] == origin["utility"]["accuracy"]["share"]
    )
    assert [0.0, 0.0] in [r["coords"] for r in s["safe_useful"]["points"]]
    assert set(s["utility_edge"]) == {"aligned", "harm"}

    lines = (out / "points.jsonl").read_text().splitlines(keepends=True)
    (out / "points.jsonl").write_text("".join(lines[:4]))  # as if killed after four points
    (out / "summary.json").unlink()
    assert main([*ARGS, "--out", str(out)]) == 0
    assert {n: (out / n).read_bytes() for n in FILES} == whole
