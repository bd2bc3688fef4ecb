"""HFGenerator on the tiny random model: determinism, batch independence, clean answers."""

from __future__ import annotations

import pytest
import torch
from helpers import PROMPTS

from landscape.errors import LandscapeError
from landscape.generate import Generator, get_generator
from landscape.generate.hf import HFGenerator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny matmuls on a few cores spend most of their time waking threads: one is much faster.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(model, tok, **kw):
    return HFGenerator(model, tok, max_new_tokens=12, **kw)


def test_greedy_is_deterministic_and_batch_independent(tiny_model, tiny_tokenizer):
    one = _gen(tiny_model, tiny_tokenizer, batch_size=1).generate(PROMPTS)
    four = _gen(tiny_model, tiny_tokenizer, batch_size=4)
    assert len(one) == len(PROMPTS) and all(isinstance(a, str) for a in one)
    assert four.generate(PROMPTS) == one
    assert four.generate(PROMPTS, seed=7) == one  # greedy ignores the seed
    assert four.generate(PROMPTS[::-1]) == one[::-1]  # answers come back in input order


def test_sampling_is_seeded(tiny_model, tiny_tokenizer):
    gen = _gen(tiny_model, tiny_tokenizer, batch_size=4, temperature=1.0)
    a = gen.generate(PROMPTS, seed=1)
    assert gen.generate(PROMPTS, seed=1) == a
    assert gen.generate(PROMPTS, seed=2) != a


def test_caller_rng_untouched(tiny_model, tiny_tokenizer):
    state = torch.get_rng_state()
    _gen(tiny_model, tiny_tokenizer, temperature=1.0).generate(PROMPTS[:2], seed=5)
    assert torch.equal(torch.get_rng_state(), state)


def test_answers_hold_no_special_tokens(tiny_model, tiny_tokenizer):
    answers = _gen(tiny_model, tiny_tokenizer, temperature=1.0).generate(PROMPTS * 3)
    special = tiny_tokenizer.all_special_tokens
    assert special and not any(s in a for a in answers for s in special)
    assert all(a == a.strip() for a in answers)


def test_empty_and_bad_settings(tiny_model, tiny_tokenizer):
    assert _gen(tiny_model, tiny_tokenizer).generate([]) == []
    with pytest.raises(LandscapeError):
        HFGenerator(tiny_model, tiny_tokenizer, batch_size=0)
    with pytest.raises(LandscapeError):
        HFGenerator(tiny_model, tiny_tokenizer, temperature=-1)


def test_registry(tiny_model, tiny_tokenizer, monkeypatch):
    gen = get_generator("hf", tiny_model, tiny_tokenizer, batch_size=2, max_new_tokens=4)
    assert isinstance(gen, HFGenerator) and isinstance(gen, Generator)
    assert gen.batch_size == 2
    # As where vLLM is not installed (tests/test_vllm.py covers it installed).
    monkeypatch.setattr("landscape.generate._installed", lambda module: False)
    with pytest.raises(LandscapeError, match="--backend vllm needs vLLM, which is not installed"):
        get_generator("vllm", tiny_model, tiny_tokenizer)
    with pytest.raises(LandscapeError, match="unknown backend 'tgi': valid backends are hf, vllm"):
        get_generator("tgi", tiny_model, tiny_tokenizer)


def test_thread_count_is_restored(tiny_model, tiny_tokenizer, monkeypatch):
    """A tiny CPU model decodes on one thread; the caller's thread count comes back after
    every call, and also when generation fails."""
    gen = HFGenerator(tiny_model, tiny_tokenizer, max_new_tokens=2)
    real = tiny_model.generate
    during = []

    def spy(*a, **k):
        during.append(torch.get_num_threads())
        return real(*a, **k)

    def boom(*a, **k):
        during.append(torch.get_num_threads())
        raise RuntimeError("boom")

    before = torch.get_num_threads()  # the module fixture's 1
    try:
        torch.set_num_threads(2)  # a count the generator must change and put back
        monkeypatch.setattr(tiny_model, "generate", spy)
        assert len(gen.generate(PROMPTS[:2])) == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(tiny_model, "generate", boom)
        with pytest.raises(RuntimeError, match="boom"):
            gen.generate(PROMPTS[:2])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert during == [1, 1]  # each call decoded on one thread
