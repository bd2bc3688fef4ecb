"""Coherence in a grid run: every answer labelled beside its verdict, each point's shares and
coherent ASR, the calibration kept for a resume, the summary's competence edge."""

from __future__ import annotations

import json

import pytest
from helpers import pair_args

from landscape.grid import main as grid_main
from landscape.io import read_jsonl


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\n" + "".join(f"How do I bake bread number {i}?\n" for i in range(6)))
    return p


def _args(pair, prompts, out, *extra):
    return [*pair_args(pair), "--dirs", "random", "--steps", "5", "--range", "-2", "2",
            "--prompts", str(prompts), "--device", "cpu", "--max-new-tokens", "6",
            "--out", str(out), *extra]  # fmt: skip


def test_a_run_labels_every_answer_and_counts_coherent_harm(tiny_pair_dir, prompts, tmp_path):
    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, out)) == 0
    cal = json.loads((out / "calibration.json").read_text())
    # the run's 6 prompts and the 40 built-in benign ones (a pair outside any world), each
    # answered greedily and sampled at temperature 1; empty answers are not scored
    assert cal["benign"] == "builtin:short-answers" and cal["sampled"] == 1.0
    assert 6 < cal["n"] <= 2 * (6 + 40) and cal["percentile"] == 99.0
    config = json.loads((out / "config.json").read_text())
    assert config["coherence"] is True and config["coherence_percentile"] == 99.0
    gens = read_jsonl(out / "generations.jsonl")
    assert all(g["coherence"]["outcome"] in ("refused", "complied", "incoherent") for g in gens)
    for g in gens:  # the harm verdict is kept; the outcome only sits beside it
        c = g["coherence"]
        if c["outcome"] != "incoherent":
            assert (c["outcome"] == "complied") == g["unsafe"]["keyword"]
    for p in read_jsonl(out / "points.jsonl"):
        mine = [g for g in gens if g["key"] == p["key"]]
        coherent = [g for g in mine if g["coherence"]["outcome"] != "incoherent"]
        inc = len(mine) - len(coherent)
        assert p["outcomes"]["incoherent"]["share"] == pytest.approx(inc / len(mine))
        assert p["outcomes"]["asr_coherent"]["n"] == len(coherent)
        if coherent:
            k = sum(g["unsafe"]["keyword"] for g in coherent)
            assert p["outcomes"]["asr_coherent"]["asr"] == pytest.approx(k / len(coherent))
    s = json.loads((out / "summary.json").read_text())["coherence"]
    assert s["calibration"] == cal and set(s["competence_edge"]) == {"random"}
    assert s["tau_incoherent"] == pytest.approx(min(1.0, s["incoherent_origin"] + 0.1))


def test_a_resume_reuses_the_calibration_and_off_leaves_no_trace(tiny_pair_dir, prompts, tmp_path):
    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, out)) == 0
    whole = {
        n: (out / n).read_bytes() for n in ("points.jsonl", "generations.jsonl", "summary.json")
    }
    lines = (out / "points.jsonl").read_text().splitlines(keepends=True)
    (out / "points.jsonl").write_text("".join(lines[:2]))  # as if killed after two points
    (out / "summary.json").unlink()
    stamp = (out / "calibration.json").stat().st_mtime_ns
    assert grid_main(_args(tiny_pair_dir, prompts, out)) == 0
    assert (out / "calibration.json").stat().st_mtime_ns == stamp
    assert {n: (out / n).read_bytes() for n in whole} == whole
    off = tmp_path / "off"
    assert grid_main(_args(tiny_pair_dir, prompts, off, "--no-coherence")) == 0
    assert "coherence" not in json.loads((off / "config.json").read_text())
    assert not (off / "calibration.json").exists()
    assert all("coherence" not in g for g in read_jsonl(off / "generations.jsonl"))
    assert "coherence" not in json.loads((off / "summary.json").read_text())


def test_the_epl_table_carries_the_coherent_edge_and_the_competence_edge(
    tiny_pair_dir, prompts, tmp_path
):
    from analysis.tables import epl_table

    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, out)) == 0
    s = json.loads((out / "summary.json").read_text())["coherence"]
    row = epl_table(out).iloc[0]
    assert row["competence_neg"] == s["competence_edge"]["random"]["neg"]
    assert row["epl_coherent_pos"] == s["epl_coherent"]["random"]["pos"]
    assert row["incoherent_origin"] == pytest.approx(s["incoherent_origin"])
    # each edge is shown with its bracket as the EPL is: a bound where the range ends
    from analysis.tables.epl import epl_shown
    from landscape.metrics import format_epl

    shown = epl_shown(epl_table(out)).iloc[0]
    for col, key in (("competence", "competence_edge"), ("epl_coherent", "epl_coherent")):
        for side in ("neg", "pos"):
            e = s[key]["random"]
            assert shown[f"{col}_{side}"] == format_epl(e[side], e[f"{side}_bracket"])
            assert f"{col}_{side}_lo" not in shown  # the CSV keeps the numbers
    off = tmp_path / "off"
    assert grid_main(_args(tiny_pair_dir, prompts, off, "--no-coherence")) == 0
    assert epl_table(off)[["competence_neg", "epl_coherent_pos"]].isna().all().all()


def test_answers_left_unscored_get_the_outcome_a_score_would_give(tiny_pair_dir, prompts, tmp_path):
    """The grid scores only answers whose NLL can change their outcome; every answer's outcome
    equals the one computed with every answer scored, by a reference pass here."""
    from landscape.coherence import (
        Calibration,
        answer_nll,
        incoherent_without_nll,
        outcome,
        signals,
    )
    from landscape.models import load_model

    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, out, "--range", "-8", "8")) == 0
    cal = Calibration.from_dict(json.loads((out / "calibration.json").read_text()))
    gens = read_jsonl(out / "generations.jsonl")
    model, tok = load_model(str(tiny_pair_dir["aligned"]), device="cpu")
    full = answer_nll(model, tok, [g["prompt"] for g in gens], [g["answer"] for g in gens])
    skipped = 0
    for g, x in zip(gens, full):
        c, cut = g["coherence"], g.get("stopped") == "refusal"
        assert c["outcome"] == outcome(signals(g["answer"], x), cal, g["unsafe"]["keyword"], cut)
        if incoherent_without_nll(c, cal, cut):
            assert c["nll"] is None and c["outcome"] == "incoherent"
            skipped += x is not None
        else:
            assert c["nll"] == pytest.approx(x, abs=1e-4)
    assert skipped > 0  # far out some answers are loops: the pass left them out


def test_the_calibration_answers_a_benign_set_too(tiny_pair_dir, prompts, tmp_path):
    """--coherence-benign joins its prompts to the calibration (each answered greedily and
    sampled) and is recorded; without it the default rule's set is named in calibration.json
    and config.json stays as before (older folders resume)."""
    from landscape.grid import GridConfig

    benign = tmp_path / "benign.txt"
    benign.write_text("Name a fruit.\nWhat colour is the sky?\nCount to three.\n")
    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, out, "--coherence-benign", str(benign))) == 0
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["benign"] == str(benign) and 6 < cal["n"] <= 2 * (6 + 3)
    assert json.loads((out / "config.json").read_text())["coherence_benign"] == str(benign)
    # the default rule
    assert GridConfig(aligned="x").coherence_set() == "builtin:short-answers"
    assert GridConfig(aligned="x", utility_prompts="u.txt").coherence_set() == "u.txt"
    assert GridConfig().coherence_set() == "toy:gsm8k"  # the toy world's own benign set


def test_runs_on_the_same_model_and_prompts_share_one_calibration(
    tiny_pair_dir, prompts, tmp_path, monkeypatch
):
    """The calibration is kept in the cache under everything it depends on: a second run
    with another direction takes it without generating, one with another percentile makes
    its own."""
    from landscape.grid import run as grid_run

    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    calls = []
    real = grid_run._calibrate_now
    monkeypatch.setattr(
        grid_run, "_calibrate_now", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    assert grid_main(_args(tiny_pair_dir, prompts, tmp_path / "a")) == 0
    assert grid_main(_args(tiny_pair_dir, prompts, tmp_path / "b", "--dirs", "random:7")) == 0
    assert len(calls) == 1
    a, b = (json.loads((tmp_path / x / "calibration.json").read_text()) for x in "ab")
    assert a == b
    out = tmp_path / "c"
    assert grid_main(_args(tiny_pair_dir, prompts, out, "--coherence-percentile", "90")) == 0
    assert len(calls) == 2
    assert json.loads((out / "calibration.json").read_text())["percentile"] == 90.0
