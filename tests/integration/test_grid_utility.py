"""Usefulness in a grid run on a tiny pair: utility at every point, counted from the stored
utility answers; utility answers never cut early and never counted as harmful ones; the
region in the summary; resume, search and shards with utility; the EPL table's columns."""

from __future__ import annotations

import json

import pytest
from helpers import pair_args

from landscape.generate.base import cut_at_stop
from landscape.grid import main as grid_main
from landscape.io import read_jsonl

QUESTIONS = [f"How do I bake bread number {i}?" for i in range(6)]


@pytest.fixture
def files(tmp_path):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("goal\n" + "".join(q + "\n" for q in QUESTIONS))
    utility = tmp_path / "utility.jsonl"
    # The tiny random model writes byte noise ("h h h hF�r4�"): references that occur in some
    # of its answers and not in others, so that the accuracy is counted from real verdicts.
    rows = [{"prompt": f"Name a colour, please ({i})", "answer": "h"} for i in range(2)]
    rows += [{"prompt": "Spell it", "answer": ["r 4", "r4"]}, {"prompt": "2 + 2?", "answer": "4"}]
    utility.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"prompts": prompts, "utility": utility}


def _args(pair, files, out, *extra):
    return [*pair_args(pair), "--dirs", "random", "--steps", "5", "--range", "-2", "2",
            "--prompts", str(files["prompts"]), "--device", "cpu", "--max-new-tokens", "6",
            "--utility-prompts", str(files["utility"]), "--out", str(out), *extra]  # fmt: skip


def _split(out):
    gens = read_jsonl(out / "generations.jsonl")
    return [g for g in gens if "set" not in g], [g for g in gens if g.get("set") == "utility"]


def test_every_point_carries_utility_counted_from_its_answers(tiny_pair_dir, files, tmp_path):
    from landscape.judges.keyword import KeywordJudge
    from landscape.utility import short_answer_correct

    keyword = KeywordJudge()
    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, files, out)) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["utility_prompts"] == str(files["utility"]) and config["utility_margin"] == 0.1
    assert "n_utility" not in config
    harmful, benign = _split(out)
    refs = {json.loads(x)["prompt"]: json.loads(x)["answer"] for x in files["utility"].open()}
    points = read_jsonl(out / "points.jsonl")
    for p in points:
        mine = [g for g in benign if g["key"] == p["key"]]
        assert len(mine) == 4 and p["utility"]["n"] == 4
        assert all("unsafe" not in g for g in mine)
        for g in mine:  # the stored verdicts are the rule's
            assert g["correct"] == short_answer_correct(g["answer"], refs[g["prompt"]])
            assert g["refused"] == (not keyword.judge([g["prompt"]], [g["answer"]])[0])
        assert p["utility"]["accuracy"]["share"] == pytest.approx(
            sum(g["correct"] for g in mine) / 4
        )
        assert p["utility"]["refused"]["share"] == pytest.approx(
            sum(g["refused"] for g in mine) / 4
        )
        # the harmful side is what it was: its answers alone make the ASR
        assert p["n"] == len([g for g in harmful if g["key"] == p["key"]]) == 6
    s = json.loads((out / "summary.json").read_text())
    u = s["utility"]
    origin = next(p for p in points if p["coords"] == [0.0])
    assert u["utility_origin"] == origin["utility"]["accuracy"]["share"]
    assert u["measure"] == "accuracy" and u["margin"] == 0.1
    inc_max = s["coherence"]["tau_incoherent"]
    want = [
        p["key"]
        for p in points
        if p["asr"] <= s["tau"] + 1e-9
        and p["outcomes"]["incoherent"]["share"] <= inc_max + 1e-9
        and p["utility"]["accuracy"]["share"] >= u["utility_origin"] - 0.1 - 1e-9
    ]
    assert [r["key"] for r in u["safe_useful"]["points"]] == want
    assert u["safe_useful"]["size"] == len(want) and u["safe_useful"]["of"] == 5


def test_a_resume_equals_an_uninterrupted_run_and_other_settings_are_refused(
    tiny_pair_dir, files, tmp_path, capsys
):
    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, files, out)) == 0
    names = ("points.jsonl", "generations.jsonl", "summary.json", "config.json")
    whole = {n: (out / n).read_bytes() for n in names}
    lines = (out / "points.jsonl").read_text().splitlines(keepends=True)
    (out / "points.jsonl").write_text("".join(lines[:2]))  # as if killed after two points
    (out / "summary.json").unlink()
    assert grid_main(_args(tiny_pair_dir, files, out)) == 0
    assert {n: (out / n).read_bytes() for n in names} == whole
    capsys.readouterr()
    assert grid_main(_args(tiny_pair_dir, files, out, "--utility-margin", "0.2")) == 2
    assert "utility_margin" in capsys.readouterr().err
    assert grid_main([*_args(tiny_pair_dir, files, out)[:-4], "--out", str(out)]) == 2
    assert "utility" in capsys.readouterr().err  # a run without utility is another config
    assert {n: (out / n).read_bytes() for n in names} == whole


def test_shards_merge_into_the_single_run_with_utility(tiny_pair_dir, files, tmp_path):
    single = tmp_path / "single"
    assert grid_main(_args(tiny_pair_dir, files, single)) == 0
    shards = []
    for i in range(2):
        shard = tmp_path / f"shard-{i}"
        assert grid_main(_args(tiny_pair_dir, files, shard, "--shard", f"{i}/2")) == 0
        assert "utility" not in json.loads((shard / "summary.json").read_text())
        shards.append(str(shard))
    merged = tmp_path / "merged"
    assert grid_main(["merge", *shards, "--out", str(merged)]) == 0
    for name in ("points.jsonl", "generations.jsonl", "summary.json", "config.json"):
        assert (merged / name).read_bytes() == (single / name).read_bytes(), name


def test_a_search_answers_the_utility_prompts_at_every_point(tiny_pair_dir, files, tmp_path):
    out = tmp_path / "search"
    assert grid_main(_args(tiny_pair_dir, files, out, "--epl-search", "--epl-batch", "2")) == 0
    points = read_jsonl(out / "points.jsonl")
    _, benign = _split(out)
    for p in points:
        assert p["utility"]["n"] == 4
        assert len([g for g in benign if g["key"] == p["key"]]) == 4
    assert "safe_useful" in json.loads((out / "summary.json").read_text())["utility"]


def test_early_stopping_never_cuts_utility_answers(tiny_pair_dir, tmp_path):
    # The same prompts as harmful and as utility prompts, and a made-up refusal list of
    # words the tiny model writes: harmful answers are cut at them, utility answers are whole,
    # so each harmful answer is its utility twin cut where early stopping cuts.
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(q + "\n" for q in QUESTIONS))
    words = tmp_path / "words.txt"
    words.write_text("r4\n")
    out = tmp_path / "run"
    args = [*pair_args(tiny_pair_dir), "--dirs", "random", "--steps", "3", "--range", "-1", "1",
            "--prompts", str(prompts), "--utility-prompts", str(prompts), "--device", "cpu",
            "--max-new-tokens", "12", "--judge", f"keyword:{words}", "--no-coherence",
            "--out", str(out)]  # fmt: skip
    assert grid_main(args) == 0
    assert json.loads((out / "config.json").read_text())["early_stop"] == "on"
    harmful, benign = _split(out)
    assert any(g.get("stopped") for g in harmful)
    assert not any("stopped" in g for g in benign)
    twins = {(tuple(g["key"]), g["prompt"]): g for g in benign}
    stops = ("r4",)
    for g in harmful:
        whole = twins[(tuple(g["key"]), g["prompt"])]["answer"]
        assert g["answer"] == (cut_at_stop(whole, stops) if g.get("stopped") else whole)
        # a benign refusal is found on the whole answer, by the run's own keyword list
        assert twins[(tuple(g["key"]), g["prompt"])]["refused"] == any(s in whole for s in stops)


def test_readers_leave_utility_answers_out_of_harm(tiny_pair_dir, files, tmp_path):
    from analysis.report.grid import grid_report
    from analysis.runs import load_generations
    from analysis.tables import epl_table

    out = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, files, out)) == 0
    harm, util = load_generations(out), load_generations(out, utility=True)
    assert sum(map(len, harm.values())) == 5 * 6 and sum(map(len, util.values())) == 5 * 4
    assert all("set" not in g for v in harm.values() for g in v)
    report = grid_report(out)
    key = ",".join(map(str, read_jsonl(out / "points.jsonl")[0]["key"]))
    shown = report["answers"][key]
    assert sum(1 for g in shown if g.get("set") == "utility") == 4
    assert sum(1 for g in shown if "unsafe" in g) == 6
    rows = {r[0]: r[1] for r in report["tables"][0]["rows"]}
    assert any("safe-and-useful" in k for k in rows)
    s = json.loads((out / "summary.json").read_text())["utility"]
    row = epl_table(out).iloc[0]
    assert row["utility_origin"] == pytest.approx(s["utility_origin"])
    assert row["safe_useful_points"] == s["safe_useful"]["size"]
    assert row["utility_edge_pos"] == s["utility_edge"]["random"]["pos"]
