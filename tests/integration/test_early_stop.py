"""Early stopping at refusals on a tiny model with planted refusals: the HF backend's cut
answers are the whole answers cut, so every verdict is that of full generation; the grid
stores them marked `"stopped": "refusal"`, records the setting, and works with the search
and with shards. (The vLLM backend's test is in test_vllm.py; the HF greedy loop that drops
finished rows, in test_early_stop_compact.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from helpers import PROMPTS, make_tiny_model, plant_refusal

from landscape.generate import compact
from landscape.generate.base import cut_at_stop
from landscape.generate.hf import HFGenerator
from landscape.grid import main
from landscape.judges.keyword import REFUSAL_KEYWORDS, KeywordJudge

ASKED = PROMPTS + [p + " please" for p in PROMPTS]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def planted(tiny_tokenizer):
    return plant_refusal(make_tiny_model(tiny_tokenizer, seed=2), tiny_tokenizer)


@pytest.fixture
def planted_pair(tmp_path, tiny_tokenizer, planted):
    """A base folder and an aligned one with planted refusals, and a prompt file."""
    paths = {}
    for tag, model in (("base", make_tiny_model(tiny_tokenizer, seed=2)), ("aligned", planted)):
        model.save_pretrained(tmp_path / tag)
        tiny_tokenizer.save_pretrained(tmp_path / tag)
        paths[tag] = tmp_path / tag
    paths["prompts"] = tmp_path / "prompts.txt"
    paths["prompts"].write_text("\n".join(ASKED) + "\n")
    return paths


def _gen(model, tok, **kw):
    return HFGenerator(model, tok, max_new_tokens=24, stop_at=REFUSAL_KEYWORDS, **kw)


@pytest.mark.parametrize("batch_size, temperature", [(1, 0.0), (4, 0.0), (12, 0.0), (4, 1.0)])
def test_cut_answers_are_the_whole_answers_cut(planted, tiny_tokenizer, batch_size, temperature):
    gen = _gen(planted, tiny_tokenizer, batch_size=batch_size, temperature=temperature)
    whole = gen.generate(ASKED, seed=3, stop=False)
    answers, stopped = gen.generate_stopped(ASKED, seed=3)
    assert (answers, stopped) == gen.finish(whole, stop=True)
    judge = KeywordJudge()
    assert judge.judge(ASKED, answers) == judge.judge(ASKED, [a.strip() for a in whole])
    if temperature == 0:  # the planted refusals: some answers refuse, at several places
        assert 0 < sum(stopped) < len(ASKED)
        assert len({a.index("I cannot") for a, s in zip(answers, stopped) if s}) > 1
        assert all(a.endswith("I cannot") for a, s in zip(answers, stopped) if s)
    assert gen.generate(ASKED, seed=3) == answers


def test_a_batch_ends_when_every_row_has_stopped(planted, tiny_tokenizer, monkeypatch):
    """Through `generate` (sampling, or more than plain greedy search), a batch ends as soon
    as its last row has stopped. (Plain greedy drops each row as it stops instead:
    test_early_stop_compact.py.)"""
    gen = _gen(planted, tiny_tokenizer, batch_size=12)
    _, stopped = gen.generate_stopped(ASKED)
    refusing = [p for p, s in zip(ASKED, stopped) if s]
    monkeypatch.setattr(compact, "plain_greedy", lambda model, gen_kw: None)
    lengths = []
    real = planted.generate

    def spy(*a, **k):
        out = real(*a, **k)
        lengths.append(out.shape[1] - k["input_ids"].shape[1])
        return out

    monkeypatch.setattr(planted, "generate", spy)
    assert all(gen.generate_stopped(refusing)[1])
    gen.generate(refusing, stop=False)
    assert lengths[0] < lengths[1] == 24  # stopped as soon as the last row had refused


def test_a_stop_without_its_string_gives_the_whole_answer(planted, tiny_tokenizer):
    """Where the library stops a row whose decoded text holds no stop string, the batch is
    generated again in full: the answers are still exactly a full run's, cut."""

    class Always:  # a stop at the first token of every row
        def __call__(self, input_ids, scores, **kw):
            return torch.ones(input_ids.shape[0], dtype=torch.bool)

    gen = _gen(planted, tiny_tokenizer, batch_size=4, temperature=1.0)
    whole = gen.generate(ASKED, seed=5, stop=False)
    gen._stops = Always()
    assert gen.generate_stopped(ASKED, seed=5) == gen.finish(whole, stop=True)


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def _grid(pair, out, *extra):
    return main([
        "--dirs", "random", "--steps", "3", "--base", str(pair["base"]),
        "--aligned", str(pair["aligned"]), "--prompts", str(pair["prompts"]),
        "--device", "cpu", "--max-new-tokens", "24", "--out", str(out), *extra,
    ])  # fmt: skip


def test_grid_verdicts_equal_full_generation(planted_pair, tmp_path, capsys):
    full, early = tmp_path / "full", tmp_path / "early"
    assert _grid(planted_pair, full, "--early-stop", "off") == 0
    assert _grid(planted_pair, early) == 0  # auto, with the keyword judge: on
    assert "early_stop" not in json.loads((full / "config.json").read_text())
    assert json.loads((early / "config.json").read_text())["early_stop"] == "on"
    pf, pe = _lines(full / "points.jsonl"), _lines(early / "points.jsonl")
    assert [(p["key"], p["asr"], p["judges"]) for p in pf] == [
        (p["key"], p["asr"], p["judges"]) for p in pe
    ]
    assert len({p["asr"] for p in pe}) > 1  # the points differ, so the comparison bites
    sf, se = (json.loads((d / "summary.json").read_text()) for d in (full, early))
    assert (sf["epl"], sf["asr_origin"]) == (se["epl"], se["asr_origin"])
    gf, ge = _lines(full / "generations.jsonl"), _lines(early / "generations.jsonl")
    assert len(gf) == len(ge) and sum("stopped" in g for g in ge) > 0
    assert not any("stopped" in g for g in gf)
    for f, e in zip(gf, ge):
        assert (f["key"], f["prompt"], f["unsafe"]) == (e["key"], e["prompt"], e["unsafe"])
        if "stopped" in e:
            assert e["stopped"] == "refusal"
            assert e["answer"] == cut_at_stop(f["answer"], REFUSAL_KEYWORDS) != f["answer"]
        else:  # an answer that did not refuse is the same answer, and scored the same
            assert (e["answer"], e["coherence"]) == (f["answer"], f["coherence"])
    cal_f, cal_e = (json.loads((d / "calibration.json").read_text()) for d in (full, early))
    assert {k: cal_e[k] for k in cal_f} == cal_f  # whole answers' thresholds unchanged
    assert cal_e["cut_n"] > 0 and cal_e["cut_nll_max"] is not None

    # A folder made without early stopping is not resumed with it, nor the other way round.
    capsys.readouterr()
    assert _grid(planted_pair, full) == 2
    assert "first difference at early_stop" in capsys.readouterr().err
    assert _grid(planted_pair, early, "--early-stop", "off") == 2
    assert _grid(planted_pair, early, "--early-stop", "on") == 0  # what auto took effect as


def test_auto_with_a_judge_a_prefix_does_not_decide(planted_pair, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert _grid(planted_pair, out, "--judge", "keyword,toy") == 0
    said = [r.getMessage() for r in caplog.records if "in full" in r.getMessage()]
    assert len(said) == 1 and "toy" in said[0]
    assert "early_stop" not in json.loads((out / "config.json").read_text())
    assert not any("stopped" in g for g in _lines(out / "generations.jsonl"))


def test_search_and_shards_stop_early_too(planted_pair, tmp_path):
    for stop in ("off", "on"):
        assert _grid(planted_pair, tmp_path / f"search-{stop}", "--epl-search", "--epl-batch",
                     "4", "--early-stop", stop) == 0  # fmt: skip
    search = [
        json.loads((tmp_path / f"search-{s}" / "summary.json").read_text()) for s in ("off", "on")
    ]
    assert search[0]["epl"] == search[1]["epl"]
    assert any("stopped" in g for g in _lines(tmp_path / "search-on" / "generations.jsonl"))

    whole = tmp_path / "whole"
    assert _grid(planted_pair, whole) == 0
    for i in range(2):
        assert _grid(planted_pair, tmp_path / f"shard{i}", "--shard", f"{i}/2") == 0
    merged = tmp_path / "merged"
    assert (
        main(["merge", str(tmp_path / "shard0"), str(tmp_path / "shard1"), "--out", str(merged)])
        == 0
    )
    for name in ("config.json", "points.jsonl", "generations.jsonl", "summary.json"):
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    assert (merged / "calibration.json").read_bytes() == (whole / "calibration.json").read_bytes()
