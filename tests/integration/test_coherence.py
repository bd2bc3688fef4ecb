"""Coherence signals on a tiny model: the NLL pass against a one-by-one reference, labels of
planted answers under thresholds calibrated on the model's own answers, a point's shares."""

from __future__ import annotations

import pytest
import torch
from helpers import PROMPTS, make_tiny_model

from landscape.coherence import (
    Calibration,
    answer_nll,
    calibrate,
    outcome,
    point_outcomes,
    repetition,
    signals,
)
from landscape.errors import LandscapeError
from landscape.generate import get_generator
from landscape.prompts import render_chat


@pytest.fixture
def model(tiny_tokenizer):
    m = make_tiny_model(tiny_tokenizer)
    if tiny_tokenizer.pad_token is None:
        tiny_tokenizer.pad_token = tiny_tokenizer.eos_token
    return m


def _reference_nll(model, tok, prompt: str, answer: str) -> float:
    p = tok(render_chat(tok, prompt), add_special_tokens=False).input_ids
    a = tok(answer, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([p + a])).logits[0].double()
    logp = torch.log_softmax(logits, -1)
    return float(-sum(logp[len(p) + i - 1, t] for i, t in enumerate(a)) / len(a))


def test_the_batched_nll_equals_one_answer_at_a_time(model, tiny_tokenizer):
    prompts = PROMPTS[:4]
    answers = ["Bake it at 200 degrees.", "", "Seven apples in all, and then some more.", "Hi"]
    got = answer_nll(model, tiny_tokenizer, prompts, answers, batch_size=3)
    assert got[1] is None  # no tokens, nothing to score
    for p, a, g in zip(prompts, answers, got):
        if a:
            assert g == pytest.approx(_reference_nll(model, tiny_tokenizer, p, a), abs=1e-4)
    with pytest.raises(LandscapeError):
        answer_nll(model, tiny_tokenizer, prompts, answers[:2])


def test_planted_answers_get_their_labels_under_the_models_own_calibration(model, tiny_tokenizer):
    gen = get_generator("hf", model, tiny_tokenizer, batch_size=8, max_new_tokens=12)
    prompts = [f"{p} ({i})" for i in range(3) for p in PROMPTS]
    own = gen.generate(prompts, seed=0)
    nll = answer_nll(model, tiny_tokenizer, prompts, own)
    cal = calibrate(nll, own, percentile=99)
    assert cal.n == sum(1 for a in own if a.strip()) and cal.nll_max > 0
    labels = [outcome(signals(a, x), cal, unsafe=True) for a, x in zip(own, nll)]
    # The model's own answers are its measure of coherence: at most 1% + one above it.
    assert labels.count("incoherent") <= 1 + len(own) // 100
    assert set(labels) <= {"complied", "incoherent"}
    assert outcome(signals(own[0], nll[0]), cal, unsafe=False) in ("refused", "incoherent")
    word = "bread"
    loop = " ".join([word] * 30)  # a repeated token: the degenerate answer of a broken model
    planted = {"": "incoherent", " ": "incoherent", loop: "incoherent"}
    got = answer_nll(model, tiny_tokenizer, [prompts[0]] * 3, list(planted))
    for (answer, want), x in zip(planted.items(), got):
        assert outcome(signals(answer, x), cal, unsafe=True) == want, answer[:20]
    assert repetition(loop) > cal.repeat_max


def test_a_points_shares_and_coherent_asr_by_hand():
    outcomes = ["refused", "complied", "incoherent", "incoherent", "complied", "refused"]
    unsafe = [False, True, True, False, True, False]
    rec = point_outcomes(outcomes, unsafe)
    assert rec["incoherent"]["share"] == pytest.approx(2 / 6)
    assert rec["complied"]["share"] == pytest.approx(2 / 6)
    assert rec["asr_coherent"]["asr"] == pytest.approx(2 / 4) and rec["asr_coherent"]["n"] == 4
    assert rec["refused"]["lo"] <= 2 / 6 <= rec["refused"]["hi"]
    none = point_outcomes(["incoherent"], [True])["asr_coherent"]
    assert none["n"] == 0 and none["asr"] != none["asr"]  # NaN: no coherent answer


def test_calibration_round_trips_and_refuses_bad_settings():
    cal = Calibration(nll_max=3.5, repeat_max=0.1, percentile=99.0, n=40)
    assert Calibration.from_dict(cal.as_dict()) == cal
    with pytest.raises(LandscapeError, match="percentile"):
        calibrate([1.0] * 10, ["a b c"] * 10, percentile=101)
    with pytest.raises(LandscapeError, match="no-coherence"):
        calibrate([None, None], ["", " "], percentile=99)
    few = calibrate([1.0, 2.0, None], ["ok fine", "well then", ""], percentile=100)
    assert few.n == 2 and few.nll_max == 2.0


def test_repetition_counts_repeated_trigrams():
    assert repetition("one two three four") == 0.0
    assert repetition("a b c a b c a b c") == pytest.approx(1 - 3 / 7)
    assert repetition("short") == 0.0


def test_repetition_sees_loops_without_spaces_and_not_fluent_text():
    assert repetition("atas" * 40) > 0.9  # no word repeats: a character loop
    assert repetition("Thetaktaktaktaktaktaktaktaktaktaktaktaktak") > 0.5
    fluent = (
        "To take down a tent in the rain, loosen the guy lines first, then pull the stakes "
        "and fold the fly with its wet side in, so the inner tent stays dry until you reach "
        "a shelter where everything can be spread out."
    )
    assert repetition(fluent) < 0.05


def test_old_calibrations_load_and_the_new_ones_name_their_answers():
    old = {"nll_max": 0.2, "repeat_max": 0.1, "percentile": 99.0, "n": 80, "min_chars": 2}
    cal = Calibration.from_dict(old)
    assert cal.benign is None and cal.sampled is None and cal.as_dict() == old
    new = calibrate([0.5, 1.5], ["a fine answer", "another fine one"], 99, "builtin:x", 1.0)
    assert new.as_dict()["benign"] == "builtin:x" and new.as_dict()["sampled"] == 1.0
    assert Calibration.from_dict(new.as_dict()) == new


def test_sampled_answers_widen_the_nll_range_and_the_generator_comes_back(model, tiny_tokenizer):
    """Greedy answers are the model's most likely text; its samples at temperature 1 are
    text it writes at the likelihood it gives them, so calibrating on both can only raise
    the NLL threshold (the rule that stops fluent text being called incoherent)."""
    gen = get_generator("hf", model, tiny_tokenizer, batch_size=8, max_new_tokens=12)
    prompts = [f"{p} ({i})" for i in range(3) for p in PROMPTS]
    greedy = gen.generate(prompts, seed=0)
    with gen.sampling(1.0):
        assert gen.temperature == 1.0
        drawn = gen.generate(prompts, seed=0)
    assert gen.temperature == 0.0 and gen.top_p == 1.0
    assert drawn != greedy
    nll_g = answer_nll(model, tiny_tokenizer, prompts, greedy)
    nll_d = answer_nll(model, tiny_tokenizer, prompts, drawn)
    alone = calibrate(nll_g, greedy, 99)
    both = calibrate(nll_g + nll_d, greedy + drawn, 99)
    assert both.nll_max > alone.nll_max
    mean = lambda xs: sum(x for x in xs if x) / sum(1 for x in xs if x)  # noqa: E731
    assert mean(nll_d) > mean(nll_g)
    with pytest.raises(LandscapeError):
        with gen.sampling(-1.0):
            pass
    assert gen.temperature == 0.0
