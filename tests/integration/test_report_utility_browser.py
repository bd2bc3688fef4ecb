"""A run report with utility prompts in a real browser (network off): a point's utility in
its line, its utility answers shown apart from the harmful ones with refused / correct in
place of harm verdicts, and the safe-and-useful region in the summary. Skipped where
Chromium is not installed."""

from __future__ import annotations

import json

import pytest
from browser import Browser, find_chromium
from helpers import pair_args

from landscape.grid import main as grid_main
from landscape.io import read_jsonl

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)"
)


def test_the_report_shows_utility_answers_and_the_region(tiny_pair_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"How do I bake bread number {i}?\n" for i in range(4)))
    utility = tmp_path / "u.jsonl"
    rows = [{"prompt": f"Name a thing ({i})", "answer": "h"} for i in range(3)]
    utility.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    argv = [*pair_args(tiny_pair_dir), "--dirs", "random:1", "--steps", "3", "--prompts",
            str(prompts), "--utility-prompts", str(utility), "--device", "cpu",
            "--max-new-tokens", "4", "--out", str(out)]  # fmt: skip
    assert grid_main(argv) == 0
    point = read_jsonl(out / "points.jsonl")[1]
    benign = [
        g
        for g in read_jsonl(out / "generations.jsonl")
        if g.get("set") and g["key"] == point["key"]
    ]
    with Browser(CHROMIUM) as b:
        b.open((out / "report.html").resolve().as_uri())
        assert b.wait_for("document.body.dataset.ready === '1'")
        key = ",".join(map(str, point["key"]))
        b.js(f"window.reportShowPoint('{key}', true)")
        info = b.js("document.getElementById('point-info').textContent")
        acc = point["utility"]["accuracy"]["share"]
        assert f"utility: 3 benign prompts, refused 0.000, accuracy {acc:.3f}" in info
        assert "7 answers" in info  # 4 harmful, then 3 utility answers
        cards = b.js(
            "[...document.querySelectorAll('#answer-list .answer.benign')].map(a =>"
            " [...a.querySelectorAll('.verdict')].map(v => v.textContent).join(' | '))"
        )
        assert cards == [
            f"{'refused' if g['refused'] else 'answered'} | {'correct' if g['correct'] else 'wrong'}"
            for g in benign
        ]
        harmful = b.js("document.querySelectorAll('#answer-list .answer:not(.benign)').length")
        assert harmful == 4
        summary = b.js("document.getElementById('summary').textContent")
        assert "safe-and-useful region" in summary and "utility at the origin" in summary
        assert b.errors == []
