"""Perturbation: θ0 + Σ cᵢ·dᵢ inside the context, θ0 restored bit-for-bit on every exit."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from landscape import directions as D
from landscape.directions import Direction
from landscape.errors import LandscapeError
from landscape.perturb import perturbed, snapshot


def state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def assert_equal_state(model, ref):
    for n, p in model.named_parameters():
        assert torch.equal(p, ref[n]), n


def plane(model):
    d1 = D.random(model, seed=1).normalized("layer", model)
    d2 = D.random(model, seed=2).orthogonalized(d1, "tensor").normalized("layer", model)
    return d1, d2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_restore_is_exact_after_normal_exit_exception_and_interrupt(tiny_tokenizer, dtype):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    d1, d2 = plane(model)
    theta0 = state(model)
    name = d1.names[0]
    with perturbed(model, {d1: 0.3, d2: -0.2}):
        assert not torch.equal(model.get_parameter(name), theta0[name])
    assert_equal_state(model, theta0)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with perturbed(model, {d1: 0.123, d2: 0.456}):
                assert not torch.equal(model.get_parameter(name), theta0[name])
                raise exc
        assert_equal_state(model, theta0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weights_inside_are_theta0_plus_sum_and_do_not_drift(tiny_tokenizer, dtype):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    d1, d2 = plane(model)
    theta0 = state(model)
    c1, c2 = 0.37, -0.11
    with perturbed(model, {d1: c1, d2: c2}):
        first = state(model)
    for n in d1.names:
        want = (theta0[n].float() + c1 * d1.tensors[n] + c2 * d2.tensors[n]).to(dtype)
        tol = 1e-6 if dtype == torch.float32 else 1e-2
        assert torch.allclose(first[n].float(), want.float(), atol=tol, rtol=tol), n
        assert first[n].dtype == dtype
    # other points in between must not leak into this one: each point starts from θ0
    for c in (0.5, -0.5, 0.01):
        with perturbed(model, {d1: c, d2: c}):
            pass
    with perturbed(model, {d1: c1, d2: c2}):
        assert_equal_state(model, first)
    assert_equal_state(model, theta0)


def test_theta0_fast_path_gives_the_same_weights(tiny_model):
    d1, d2 = plane(tiny_model)
    theta0 = snapshot(tiny_model, d1.names)
    assert all(t.data_ptr() != tiny_model.get_parameter(n).data_ptr() for n, t in theta0.items())
    with perturbed(tiny_model, {d1: 0.2, d2: 0.1}):
        slow = state(tiny_model)
    with perturbed(tiny_model, {d1: 0.2, d2: 0.1}, theta0=theta0):
        assert_equal_state(tiny_model, slow)
    # the point is computed from the snapshot, not from whatever the weights are now
    with torch.no_grad():
        for n in d1.names:
            tiny_model.get_parameter(n).add_(1.0)
    with perturbed(tiny_model, {d1: 0.2, d2: 0.1}, theta0=theta0):
        assert_equal_state(tiny_model, slow)
    for n in d1.names:
        assert torch.equal(tiny_model.get_parameter(n), theta0[n])
    with pytest.raises(LandscapeError, match="theta0"):
        with perturbed(tiny_model, {d1: 0.2}, theta0={}):
            pass


def test_directions_with_different_names_are_unioned(tiny_model):
    q, k = "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"
    p = dict(tiny_model.named_parameters())
    theta0 = state(tiny_model)
    dq = Direction({q: torch.ones_like(p[q])})
    dk = Direction({k: torch.ones_like(p[k])})
    with perturbed(tiny_model, {dq: 2.0, dk: -1.0}):
        assert torch.allclose(p[q], theta0[q] + 2.0)
        assert torch.allclose(p[k], theta0[k] - 1.0)
        for n in theta0:
            if n not in (q, k):
                assert torch.equal(p[n], theta0[n])
    assert_equal_state(tiny_model, theta0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_non_finite_raises_and_leaves_theta0(tiny_tokenizer, dtype):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    d1, _ = plane(model)
    theta0 = state(model)
    bad = Direction({n: t.clone() for n, t in d1.tensors.items()})
    bad.tensors[d1.names[3]][0, 0] = float("inf")
    # 1e39 overflows fp32 itself; 1e7 is finite in fp32 but not in fp16
    cases = [{d1: 1e39}, {bad: 0.1}] + ([{d1: 1e7}] if dtype == torch.float16 else [])
    for coeffs in cases:
        with pytest.raises(LandscapeError, match=r"model\.layers\..*=") as info:
            with perturbed(model, coeffs):
                pytest.fail("the body must not run")
        assert "non-finite" in str(info.value)
        assert_equal_state(model, theta0)
    assert d1.names[3] in str(info.value) or dtype == torch.float16


def test_bad_directions_are_rejected(tiny_model, tiny_tokenizer):
    theta0 = state(tiny_model)
    with pytest.raises(LandscapeError, match="nope"):
        with perturbed(tiny_model, {Direction({"nope": torch.zeros(2)}): 1.0}):
            pass
    with pytest.raises(LandscapeError, match="lm_head"):
        with perturbed(tiny_model, {Direction({"lm_head.weight": torch.zeros(3, 3)}): 1.0}):
            pass
    assert_equal_state(tiny_model, theta0)
    tied = make_tiny_model(tiny_tokenizer)
    tied.lm_head.weight = tied.model.embed_tokens.weight
    both = Direction(
        {
            "lm_head.weight": torch.zeros(tied.lm_head.weight.shape),
            "model.embed_tokens.weight": torch.zeros(tied.lm_head.weight.shape),
        }
    )
    with pytest.raises(LandscapeError, match="tied"):
        with perturbed(tied, {both: 1.0}):
            pass
