"""Llama, Qwen2, Gemma2 and Mistral at tiny size, built from their configs: saved and loaded in
each dtype, scoped, perturbed and restored exactly (in memory and streamed from CPU memory)."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import tiny_config
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from landscape import directions as D
from landscape import scope
from landscape.models import load_model
from landscape.perturb import hold, perturbed, snapshot

LAYERS = 2
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),  # q/k/v carry biases: outside `blocks`
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, {"head_dim": 8, "query_pre_attn_scalar": 8}),
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": 64}),
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _build(arch, tokenizer):
    config_cls, model_cls, extra = ARCHS[arch]
    cfg = tiny_config(tokenizer, config_cls, layers=LAYERS, positions=128, **extra)
    torch.manual_seed(0)
    return model_cls(cfg)


@pytest.fixture(scope="module", params=list(ARCHS))
def saved(request, tiny_tokenizer, tmp_path_factory):
    arch = request.param
    folder = tmp_path_factory.mktemp(arch)
    model = _build(arch, tiny_tokenizer)
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return arch, folder, model.config.model_type


@pytest.mark.parametrize("dtype", list(DTYPES))
def test_load_scope_perturb_restore(saved, dtype):
    arch, folder, model_type = saved
    model, tok = load_model(folder, dtype=dtype, device="cpu")
    assert model.config.model_type == model_type
    assert {p.dtype for p in model.parameters()} == {DTYPES[dtype]}
    assert tok.padding_side == "left" and tok.pad_token is not None

    names = scope.select(model, "blocks")
    want = [
        f"model.layers.{i}.{m}.{p}.weight"
        for i in range(LAYERS)
        for m, ps in (("self_attn", PROJ[:4]), ("mlp", PROJ[4:]))
        for p in ps
    ]
    assert sorted(names) == sorted(want)
    rest = [n for n, _ in model.named_parameters() if n not in names]
    assert any(re.search("norm", n) for n in rest) and any("embed" in n for n in rest)
    if arch == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in rest

    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    d1 = D.random(model, names, seed=1).normalized("layer", model)
    d2 = D.random(model, names, seed=2).orthogonalized(d1, "tensor").normalized("layer", model)
    assert abs(d1.cosine(d2)) < 1e-5
    for n in names:  # layer normalisation: each tensor as long as the weight it perturbs
        w = model.get_parameter(n).detach().double().norm()
        assert torch.isclose(d1.tensors[n].double().norm(), w, rtol=1e-5), n

    results = []
    for where in ("none", "cpu"):
        theta0 = snapshot(model, names, where)
        h1, h2 = hold(d1, model, where), hold(d2, model, where)
        with perturbed(model, {h1: 0.1, h2: -0.05}, theta0=theta0):
            inside = {n: p.detach().clone() for n, p in model.named_parameters()}
            ids = tok("Sure, here is", return_tensors="pt").input_ids
            assert torch.isfinite(model(ids).logits.float()).all()
        for n, p in model.named_parameters():
            assert torch.equal(p, ref[n]), n  # restored bit for bit
            assert torch.equal(inside[n], ref[n]) == (n not in names), n
        results.append(inside)
    for n in names:
        assert torch.equal(results[0][n], results[1][n]), n
