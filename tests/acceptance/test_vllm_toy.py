"""The vLLM backend on the toy pair: the same greedy answers as HF at perturbed points.

Runs where vLLM is installed (`bash .ci/vllm`); skipped elsewhere."""

from __future__ import annotations

import pytest
from helpers import compare_hf_vllm

from landscape import directions as D
from landscape import scope


@pytest.mark.slow
def test_matches_hf_on_the_toy_pair(toy_cache, vllm_generator):
    from landscape.models import load_model
    from landscape.prompts import load_prompts
    from landscape.toy import toy_pair

    pair = toy_pair()
    model, tok = load_model(pair.aligned, device="cpu")
    base, _ = load_model(pair.base, device="cpu")
    names = scope.select(model, "blocks")
    dirs = [
        D.aligned(base, model, names).normalized("layer", model),
        D.random(model, names, seed=1).normalized("layer", model),
    ]
    del base
    prompts = load_prompts("toy:harmful", n=12)
    points = [(-1.0, 0.0), (-0.25, 0.25), (0.25, -0.25), (0.5, 0.5)]
    at0, answers = compare_hf_vllm(model, tok, vllm_generator, dirs, points, prompts, 32)
    assert any(a != at0 for a in answers)
