"""The AsFT penalty on a real peft LoRA and in full fine-tuning of a tiny Llama."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_model
from peft import LoraConfig, get_peft_model
from penalty_reference import dense_reference

from landscape import directions as D
from landscape.asft.penalty import AsftPenalty, diagnostics
from landscape.errors import LandscapeError


# --- a real peft LoRA on a tiny Llama -------------------------------------------------------
def lora_model(tokenizer, dtype=torch.float32):
    base = make_tiny_model(tokenizer, seed=0, dtype=dtype)
    direction = D.random(base, seed=1)  # a stand-in anchor over the block matrices
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # peft starts B at zero, where every variant is zero
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model, direction


def lora_modules(model):
    return {
        n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A
    }


@pytest.mark.parametrize(
    "spec",
    ["safelora", "subspace:3", "flat", "flat+one-sided", "subspace:2+one-sided", "along-flat"],
)
def test_peft_penalty_equals_dense_sum_with_the_lora_scaling(tiny_tokenizer, spec):
    model, direction = lora_model(tiny_tokenizer)
    pen = AsftPenalty(model, direction, spec, lam=1.0)
    mods = lora_modules(model)
    assert len(pen.names) == len(mods) == 4  # q and v in two layers
    want = unscaled = 0.0
    for path, m in mods.items():
        assert m.scaling["default"] == 4.0  # lora_alpha / r
        dW = m.get_delta_weight("default")  # what merge_and_unload adds: scaling·B A
        d = direction.tensors[path.removeprefix("base_model.model.") + ".weight"]
        want += dense_reference(dW, d, spec)
        unscaled += dense_reference(dW / 4.0, d, spec)  # the released code's ΔW = B A
    got = pen(model).item()
    assert got == pytest.approx(want, rel=1e-5)
    assert abs(got - unscaled) > 0.5 * abs(got)  # leaving the scaling out would be caught


def test_delta_weight_is_what_merging_adds(tiny_tokenizer):
    model, _ = lora_model(tiny_tokenizer)
    path, m = next(iter(lora_modules(model).items()))
    before = m.get_base_layer().weight.detach().clone()
    dW = m.get_delta_weight("default")
    merged = copy.deepcopy(model).merge_and_unload()
    after = merged.get_submodule(path.removeprefix("base_model.model.")).weight
    assert torch.allclose(after - before, dW, atol=1e-6)


def test_gradient_reaches_lora_factors_only_and_lambda_scales(tiny_tokenizer):
    model, direction = lora_model(tiny_tokenizer)
    pen = AsftPenalty(model, direction, "flat+one-sided", lam=1.0)
    value = pen(model)
    value.backward()
    for n, p in model.named_parameters():
        if "lora_" in n:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:
            assert p.grad is None, n
    twice = AsftPenalty(model, direction, "flat+one-sided", lam=2.5)(model)
    assert twice.item() == pytest.approx(2.5 * value.item(), rel=1e-6)
    assert AsftPenalty(model, direction, "flat", lam=0.0)(model).item() == 0.0


def test_bf16_model_gets_an_fp32_penalty(tiny_tokenizer):
    model, direction = lora_model(tiny_tokenizer, dtype=torch.bfloat16)
    value = AsftPenalty(model, direction, "safelora", lam=1.0)(model)
    assert value.dtype == torch.float32
    want = 0.0
    for path, m in lora_modules(model).items():
        B, A = m.lora_B["default"].weight.double(), m.lora_A["default"].weight.double()
        d = direction.tensors[path.removeprefix("base_model.model.") + ".weight"]
        want += dense_reference(m.scaling["default"] * B @ A, d, "safelora")
    assert value.item() == pytest.approx(want, rel=1e-4)


def test_bad_settings_raise(tiny_tokenizer):
    model, direction = lora_model(tiny_tokenizer)
    for lam in (-0.1, float("nan"), "x"):
        with pytest.raises(LandscapeError, match="λ"):
            AsftPenalty(model, direction, "flat", lam=lam)
    with pytest.raises(LandscapeError, match="subspace:K"):
        AsftPenalty(model, direction, "subspace", lam=1.0)
    missing = D.Direction(
        {n: t for n, t in direction.tensors.items() if "layers.1.self_attn.v_proj" not in n}
    )
    with pytest.raises(LandscapeError, match=r"layers\.1\.self_attn\.v_proj"):
        AsftPenalty(model, missing, "flat", lam=1.0)
    name = "model.layers.0.self_attn.q_proj.weight"
    wrong = D.Direction({**direction.tensors, name: torch.zeros(3, 3)})
    with pytest.raises(LandscapeError, match=r"q_proj.*\(3, 3\)"):
        AsftPenalty(model, wrong, "flat", lam=1.0)
    with pytest.raises(LandscapeError, match="no LoRA"):
        AsftPenalty(make_tiny_model(tiny_tokenizer), direction, "flat", lam=1.0)


# --- full fine-tuning and diagnostics --------------------------------------------------------
@pytest.mark.parametrize("spec", ["safelora", "subspace:3+one-sided", "flat+one-sided"])
def test_full_fine_tuning_penalty(tiny_tokenizer, spec):
    model = make_tiny_model(tiny_tokenizer, seed=0)
    direction = D.random(model, "re:self_attn", seed=1)
    pen = AsftPenalty.for_full(model, None, direction, spec, lam=2.0)
    assert pen(model).item() == 0.0  # W = W0 at the start
    g = torch.Generator().manual_seed(5)
    params = dict(model.named_parameters())
    with torch.no_grad():
        steps = {n: 0.01 * torch.randn(params[n].shape, generator=g) for n in direction.names}
        for n, s in steps.items():
            params[n].add_(s)
    want = sum(dense_reference(steps[n], direction.tensors[n], spec) for n in direction.names)
    value = pen(model)
    assert value.item() == pytest.approx(2.0 * want, rel=1e-4)
    value.backward()
    assert all(params[n].grad is not None for n in direction.names)
    assert params["model.embed_tokens.weight"].grad is None


def test_diagnostics_read_the_update_against_the_direction(tiny_tokenizer):
    model = make_tiny_model(tiny_tokenizer, seed=0)
    direction = D.random(model, "re:self_attn", seed=1)
    back = direction.scaled(-0.5)  # straight back along d
    dg = diagnostics(back, direction, "flat+one-sided")
    assert dg["cos"] == pytest.approx(-1.0) and dg["along_share"] == pytest.approx(-1.0)
    assert dg["along"] == pytest.approx(-0.5 * direction.norm(), rel=1e-9)
    assert dg["against_share"] == pytest.approx(1.0) and dg["penalised_share"] == pytest.approx(1.0)
    assert diagnostics(back, direction, "flat")["allowed_share"] == pytest.approx(1.0)

    other = D.random(model, "re:self_attn", seed=7).scaled(0.01)
    for spec in ("subspace:3", "safelora+one-sided", "along-flat"):
        dg = diagnostics(other, direction, spec)
        want = sum(dense_reference(t, direction.tensors[n], spec) for n, t in other.tensors.items())
        assert dg["penalised_share"] * dg["update_norm"] ** 2 == pytest.approx(want, rel=1e-9)
        assert dg["cos"] == pytest.approx(other.cosine(direction), abs=1e-9)
        assert set(dg["per_module"]) == set(other.names)


@pytest.mark.parametrize("variant", ["safelora", "subspace:2+one-sided", "flat+one-sided"])
def test_batched_modules_equal_the_per_module_sum(tiny_tokenizer, variant):
    """Same-shape modules are penalised in one batched call; directions of different rank
    (safelora keeps each d's numerical rank) must give the sum of the per-module values."""
    from conftest import make_tiny_model
    from peft import LoraConfig, get_peft_model

    from landscape.asft.penalty import AsftPenalty
    from landscape.directions import Direction

    model = make_tiny_model(tiny_tokenizer, seed=0)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for i, (n, p) in enumerate(model.named_parameters()):
        if n.endswith(("q_proj.weight", "v_proj.weight")):
            rank = 1 + i % 3  # rank 1, 2 or 3: different spectra within one shape group
            tensors[n] = torch.randn(p.shape[0], rank, generator=g) @ torch.randn(
                rank, p.shape[1], generator=g
            )
    pm = get_peft_model(
        model,
        LoraConfig(
            r=4,
            lora_alpha=16,
            target_modules=["q_proj", "v_proj"],
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
        ),
    )
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g))
    pen = AsftPenalty(pm, Direction(tensors, {"kind": "aligned"}), variant, 1.0)
    batched = pen(pm)
    per_module = sum(
        t.anchor.lora(
            t.module.lora_B["default"].weight,
            t.module.lora_A["default"].weight,
            t.module.scaling["default"],
        )
        for t in pen._terms
    )
    assert len(pen._groups) < len(pen._terms)  # something was batched
    assert torch.allclose(batched, per_module, rtol=1e-5)
