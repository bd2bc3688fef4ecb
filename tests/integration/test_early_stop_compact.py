"""Greedy early stopping in the HF backend drops each finished row from its batch and lets the
next prompts take its place (`compact.stream`): on a tiny model with planted refusals and
planted EOS, every row's new tokens and stop point equal the whole-batch path's (`generate`
with the stop criterion, a batch at a time) and, up to where each row finishes, full
generation's; the answers are full generation's cut; each row costs only its own positions,
and the batch stays full while prompts wait. Sampling, and settings beyond plain greedy
search, stay with `generate`."""

from __future__ import annotations

import pytest
import torch
from helpers import PROMPTS, make_tiny_model, plant_refusal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import StopStringCriteria

from landscape.generate import compact
from landscape.generate.hf import HFGenerator
from landscape.judges.keyword import REFUSAL_KEYWORDS

ASKED = PROMPTS + [p + " please" for p in PROMPTS]
MAX_NEW = 24


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(tok, eos: bool):
    """The planted-refusal model; with `eos`, EOS planted too (a seeded random boost of its
    lm_head row, so that it wins at a few places only) and declared as a list of two ids, as
    some models' generation configs do."""
    model = plant_refusal(make_tiny_model(tok, seed=2), tok)
    if eos:
        with torch.no_grad():
            head = model.get_output_embeddings().weight
            g = torch.Generator().manual_seed(4)
            head[tok.eos_token_id] += 0.11 * torch.randn(head.shape[1], generator=g)
        model.generation_config.eos_token_id = [tok.bos_token_id, tok.eos_token_id]
    return model


def _gen(model, tok, **kw):
    return HFGenerator(model, tok, max_new_tokens=MAX_NEW, stop_at=REFUSAL_KEYWORDS, **kw)


def _whole_batch(monkeypatch):
    """Every batch through `generate` with the stop criterion, as where compacting is off."""
    monkeypatch.setattr(compact, "plain_greedy", lambda model, gen_kw: None)


def _recorded(gen, prompts, stop: bool):
    """generate_stopped's result, each `generate` batch's (new tokens, stop points), positions
    decoded."""
    batches, real = [], gen._run

    def spy(*a):
        out = real(*a)
        batches.append(out)
        return out

    gen._run, before = spy, gen.positions
    try:
        result = gen.generate_stopped(prompts, stop=stop)
    finally:
        del gen._run
    return result, batches, gen.positions - before


def _streamed(monkeypatch):
    """Records what each `compact.stream` call returns and the batch sizes it decoded."""
    calls, real_stream, real_step = [], compact.stream, compact._step

    def stream(*a):
        calls.append({"sizes": []})
        calls[-1]["out"] = real_stream(*a)
        return calls[-1]["out"]

    def step(model, names, ids, *rest):
        calls[-1]["sizes"].append(len(ids))
        return real_step(model, names, ids, *rest)

    monkeypatch.setattr(compact, "stream", stream)
    monkeypatch.setattr(compact, "_step", step)
    return calls


def _ends(new, at, eos, pad):
    """Per row: how it finished ('stop', 'eos', 'max') and its own number of new tokens."""
    out = []
    for row, n in zip(new.tolist(), at):
        if n:
            out.append(("stop", n))
        elif hit := [i for i, t in enumerate(row) if t in eos]:
            out.append(("eos", hit[0] + 1))
        else:
            out.append(("max", len(row)))
            assert len(row) == MAX_NEW
        assert all(t == pad for t in row[out[-1][1] :])  # padded after it finished
    return out


CASES = {  # (planted EOS, batch size, prompts)
    "mixed": (True, 12, ASKED),
    "batches of 4": (True, 4, ASKED),
    "batch of one": (True, 1, ASKED),
    "refusals only at their own steps": (False, 12, ASKED),
    "all rows stop at once": (False, 3, [ASKED[1], ASKED[7], ASKED[1]]),
    "no joining (a windowed cache)": (True, 4, ASKED),
}


@pytest.mark.parametrize("case", CASES)
def test_compacting_equals_whole_batch_and_full_generation(tiny_tokenizer, monkeypatch, case):
    eos_planted, batch_size, prompts = CASES[case]
    tok = tiny_tokenizer
    model = _model(tok, eos_planted)
    eos = compact.plain_greedy(model, _gen(model, tok)._generation_kwargs())
    assert eos == ([tok.bos_token_id, tok.eos_token_id] if eos_planted else [tok.eos_token_id])
    calls = []
    real_generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k)
    )
    if case.startswith("no joining"):  # a cache whose layers cannot be padded and joined
        monkeypatch.setattr(compact, "_layers", lambda cache: None)

    with monkeypatch.context() as m:
        streams = _streamed(m)
        gen_c = _gen(model, tok, batch_size=batch_size)
        (ans_c, stop_c), _, pos_c = _recorded(gen_c, prompts, True)
    assert not calls and len(streams) == 1  # one stream over all prompts, never generate
    rows_c, at_c, decoded, passes = streams[0]["out"]
    assert decoded == pos_c == sum(gen_c.lengths)
    assert passes == gen_c.passes == len(streams[0]["sizes"])  # one per forward
    full, runs_f, _ = _recorded(_gen(model, tok, batch_size=batch_size), prompts, False)
    with monkeypatch.context() as m:
        _whole_batch(m)
        (ans_w, stop_w), runs_w, pos_w = _recorded(
            _gen(model, tok, batch_size=batch_size), prompts, True
        )

    assert (ans_c, stop_c) == (ans_w, stop_w) == _gen(model, tok).finish(full[0], stop=True)
    # The stream's rows are the prompts in the order the batches take them.
    new_w = [row for new, _ in runs_w for row in new]
    at_w = [n for _, at in runs_w for n in at]
    new_f = [row for new, _ in runs_f for row in new]
    ends = [e for new, at in runs_w for e in _ends(new, at, eos, tok.pad_token_id)]
    assert at_c == at_w  # the same stop points
    for row_c, row_w, row_f, (how, n) in zip(rows_c, new_w, new_f, ends, strict=True):
        assert torch.equal(row_c, row_w[:n])  # token for token, up to where it finished
        assert torch.equal(row_c, row_f[:n])  # full generation's, up to its end
        if how != "stop":  # it ended as full generation ends it
            assert _ends(row_f[None], [0], eos, tok.pad_token_id)[0] == (how, n)
    # Each row cost its own tokens only; the whole-batch path decodes every row to its
    # batch's last step, which costs more wherever rows finish at different steps.
    assert pos_c == sum(n for _, n in ends)
    assert sorted(gen_c.lengths) == sorted(n for _, n in ends)  # each prompt's own
    sizes = streams[0]["sizes"]
    kinds = {how for how, _ in ends}
    if case == "all rows stop at once":
        assert len(set(ends)) == 1 and kinds == {"stop"}
        assert pos_c == pos_w
        return
    assert pos_c == pos_w if batch_size == 1 else pos_c < pos_w
    assert max(sizes) <= batch_size
    if case.startswith("no joining"):  # each batch runs out before the next one starts
        assert sum(1 for a, b in zip(sizes, sizes[1:]) if b > a) == len(runs_w) - 1
    elif len(prompts) > batch_size > 1:
        # Prompts joined a running batch (a prefill of fewer rows than the batch size while
        # others were decoding), and the batch kept more rows than without joining.
        assert any(0 < b < batch_size and a > 0 for a, b in zip(sizes, sizes[1:]))
        assert len(sizes) < len(runs_w) * MAX_NEW
    assert len({n for how, n in ends if how == "stop"}) > 1  # refusals at several steps
    assert kinds == ({"stop", "eos", "max"} if eos_planted else {"stop", "max"})
    if eos_planted:
        assert len({n for how, n in ends if how == "eos"}) > 1
    lengths = {len(tok(p)["input_ids"]) for p in prompts}
    assert len(lengths) > 1  # prompts of several lengths: left padding


def test_sampling_goes_through_generate(tiny_tokenizer, monkeypatch):
    """Rows share the random stream: sampling keeps `generate` (with its whole-batch stop),
    so its answers are a full run's with the same seed, cut."""
    tok = tiny_tokenizer
    model = _model(tok, eos=True)
    gen = _gen(model, tok, batch_size=4, temperature=1.0)
    whole = gen.generate(ASKED, seed=3, stop=False)
    calls = []
    real_generate = model.generate

    def spy(*a, **k):
        calls.append("stopping_criteria" in k)
        return real_generate(*a, **k)

    monkeypatch.setattr(model, "generate", spy)
    assert gen.generate_stopped(ASKED, seed=3) == gen.finish(whole, stop=True)
    assert calls == [True] * 3  # one generate call per batch, with the stop criterion


@pytest.mark.parametrize("setting", [{"repetition_penalty": 1.3}, {"no_repeat_ngram_size": 3}])
def test_more_than_plain_greedy_stays_with_generate(tiny_tokenizer, monkeypatch, setting):
    """A logits processor in the model's generation config (with which generate changes the
    scores, and may keep per-row state) keeps the whole-batch path: still exact."""
    tok = tiny_tokenizer
    model = _model(tok, eos=False)
    for k, v in setting.items():
        setattr(model.generation_config, k, v)
    gen = _gen(model, tok, batch_size=12)
    assert compact.plain_greedy(model, gen._generation_kwargs()) is None
    whole = gen.generate(ASKED, stop=False)
    calls = []
    real_generate = model.generate
    monkeypatch.setattr(
        model, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k)
    )
    assert gen.generate_stopped(ASKED) == gen.finish(whole, stop=True)
    assert calls == [1]


def test_plain_greedy_says_when_generate_does_more(tiny_tokenizer):
    tok = tiny_tokenizer
    model = _model(tok, eos=False)
    greedy = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": tok.pad_token_id}
    assert compact.plain_greedy(model, greedy) == [tok.eos_token_id]
    for other in ({"do_sample": True}, {"num_beams": 2}, {"use_cache": False},
                  {"cache_implementation": "static"}, {"min_new_tokens": 3},
                  {"suppress_tokens": [5]}):  # fmt: skip
        assert compact.plain_greedy(model, {**greedy, **other}) is None, other
    model.generation_config.eos_token_id = None
    assert compact.plain_greedy(model, greedy) == []


def test_greedy_stop_without_its_string_gives_the_whole_answer(tiny_tokenizer):
    """The safety net holds for the compacting loop too: a row stopped where its decoded text
    holds no stop string sends its batch through generate in full."""

    class Always:  # a stop at the first token of every row
        def __call__(self, input_ids, scores, **kw):
            return torch.ones(input_ids.shape[0], dtype=torch.bool)

    tok = tiny_tokenizer
    gen = _gen(_model(tok, eos=True), tok, batch_size=4)
    whole = gen.generate(ASKED, stop=False)
    gen._stops = Always()
    assert gen.generate_stopped(ASKED) == gen.finish(whole, stop=True)


def test_the_loop_decodes_a_tiny_model_on_one_thread(tiny_tokenizer, monkeypatch):
    tok = tiny_tokenizer
    gen = _gen(_model(tok, eos=False), tok, batch_size=4)
    real, during = compact.stream, []

    def spy(*a):
        during.append(torch.get_num_threads())
        return real(*a)

    monkeypatch.setattr(compact, "stream", spy)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        gen.generate_stopped(ASKED[:6])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert during == [1]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_checking_only_rows_that_can_end_a_stop_string_changes_no_answer(tiny_tokenizer, data):
    """The stream asks transformers' StopStringCriteria only about rows whose last token can
    end one of its strings: on token sequences that end with a stop string, with a piece of
    one, or with anything (ids beyond the vocabulary too), the answers are the criterion's."""
    tok = tiny_tokenizer
    criteria = StopStringCriteria(tok, list(REFUSAL_KEYWORDS))
    stops = compact._Stops(criteria)
    assert stops.can_end is not None  # the table this transformers version keeps is read
    vocab = len(criteria.embedding_vec)
    rows = []
    for _ in range(data.draw(st.integers(1, 6))):
        head = data.draw(st.lists(st.integers(0, vocab + 5), min_size=1, max_size=12))
        word = data.draw(st.sampled_from(REFUSAL_KEYWORDS))
        cut = data.draw(st.integers(1, len(word)))
        tail = tok(" " + word[: cut if data.draw(st.booleans()) else len(word)])["input_ids"]
        rows.append((head + tail)[-16:])
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    assert stops(ids).tolist() == criteria(ids, None).tolist()


def test_the_stop_check_finds_stops_where_the_criterion_does(tiny_tokenizer):
    """Not a vacuous agreement: whole refusal strings are found, pieces and others are not."""
    tok = tiny_tokenizer
    criteria = StopStringCriteria(tok, list(REFUSAL_KEYWORDS))
    texts = ["Sure. I'm sorry", "Sure. I'm sor", "Sure, here", "I cannot"]
    enc = tok(texts, padding=True, padding_side="left", return_tensors="pt")["input_ids"]
    got = compact._Stops(criteria)(enc).tolist()
    assert got == criteria(enc, None).tolist() == [True, False, False, True]
