"""Perturbation: θ0 + Σ cᵢ·dᵢ inside the context, θ0 restored bit-for-bit on every exit."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model
from hypothesis import given
from hypothesis import strategies as st

from landscape import directions as D
from landscape.directions import Direction
from landscape.errors import LandscapeError
from landscape.perturb import (
    HostTensors,
    fit_in_order,
    generation_bytes,
    hold,
    peak_memory,
    perturbed,
    plan_offload,
    snapshot,
)


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


# --- where θ0 and the directions are kept ----------------------------------------------


def _held(model, d1, d2, where_theta0, where_dirs):
    theta0 = snapshot(model, d1.names, where_theta0)
    return theta0, [hold(d, model, w) for d, w in zip((d1, d2), where_dirs)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "where", [("cpu", ("cpu", "cpu")), ("none", ("cpu", "none")), ("cpu", ("none", "none"))]
)
def test_streamed_placement_gives_bitwise_the_same_weights(tiny_tokenizer, dtype, where):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    d1, d2 = plane(model)
    ref = state(model)
    theta0, (h1, h2) = _held(model, d1, d2, "none", ("none", "none"))
    stheta0, (s1, s2) = _held(model, d1, d2, where[0], where[1])
    assert isinstance(stheta0, HostTensors) == (where[0] == "cpu")
    for c1, c2 in [(0.37, -0.11), (-0.25, 0.0), (1e-4, 0.2)]:
        with perturbed(model, {h1: c1, h2: c2}, theta0=theta0):
            in_memory = state(model)
        with perturbed(model, {s1: c1, s2: c2}, theta0=stheta0):
            assert_equal_state(model, in_memory)
        assert_equal_state(model, ref)
    with pytest.raises(RuntimeError):
        with perturbed(model, {s1: 0.3, s2: 0.3}, theta0=stheta0):
            raise RuntimeError("boom")
    assert_equal_state(model, ref)


def test_streamed_tensors_go_through_a_staging_copy(tiny_model, monkeypatch):
    """The streaming path is a different path: each held tensor is copied to the device
    before use, never read in place; the in-memory path copies no direction tensor."""
    d1, d2 = plane(tiny_model)
    theta0 = snapshot(tiny_model, d1.names, "cpu")
    host = hold(d1, tiny_model, "cpu")
    assert isinstance(host.tensors, HostTensors) and host.meta == d1.meta
    assert all(t.data_ptr() != tiny_model.get_parameter(n).data_ptr() for n, t in theta0.items())
    ptrs = {t.data_ptr() for t in host.tensors.values()}
    copied = []
    real = torch.Tensor.copy_

    def spy(self, src, *a, **k):
        if src.data_ptr() in ptrs:
            copied.append(src.data_ptr())
        return real(self, src, *a, **k)

    monkeypatch.setattr(torch.Tensor, "copy_", spy)
    with perturbed(tiny_model, {host: 0.5}, theta0=theta0):
        pass
    assert sorted(copied) == sorted(ptrs)
    copied.clear()
    with perturbed(tiny_model, {hold(d1, tiny_model, "none"): 0.5}, theta0=theta0):
        pass
    assert copied == []


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_plan_offload(tiny_tokenizer, dtype):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    direction = D.random(model)
    names = direction.names
    for where in ("none", "cpu"):
        plan = plan_offload(model, names, 2, where)
        assert plan["theta0"] == where and plan["directions"] == [where, where]
    # a model on the CPU keeps everything where it is
    plan = plan_offload(model, names, 2, "auto")
    assert plan["theta0"] == "none" and plan["directions"] == ["none", "none"]
    # the byte counts are what a run really holds: the θ0 copies and a direction's tensors
    theta0 = snapshot(model, names)
    assert plan["theta0_bytes"] == _nbytes(theta0.values())
    assert plan["direction_bytes"] == _nbytes(direction.tensors.values())
    with pytest.raises(LandscapeError, match="unknown offload 'gpu'"):
        plan_offload(model, names, 2, "gpu")
    with pytest.raises(LandscapeError, match="unknown offload"):
        snapshot(model, names, "disk")


@given(
    sizes=st.lists(st.integers(0, 100), max_size=6),
    budget=st.integers(-10, 300),
)
def test_fit_in_order(sizes, budget):
    where = fit_in_order(sizes, budget)
    assert len(where) == len(sizes)
    on = [s for s, w in zip(sizes, where) if w == "none"]
    assert sum(on) <= max(budget, 0) or not on
    # greedy in order: whatever was left out did not fit beside what came before it
    for i, (s, w) in enumerate(zip(sizes, where)):
        used = sum(x for x, y in zip(sizes[:i], where[:i]) if y == "none")
        assert (w == "none") == (used + s <= budget)


def _measured_generation_bytes(model, batch_size: int, tokens: int) -> int:
    """What generation really holds beyond the weights, measured: the KV cache the model
    builds for `batch_size` sequences of `tokens`, plus one step's logits in fp32."""
    ids = torch.randint(0, model.config.vocab_size, (batch_size, tokens))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    # transformers 5 calls it `cache`, older versions `past_key_values`
    cache = out["cache"] if "cache" in out else out.past_key_values
    kv = _nbytes(t for layer in cache.layers for t in (layer.keys, layer.values))
    return kv + _nbytes([out.logits[:, -1].float()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("batch_size", "tokens"), [(3, 100), (8, 40)])
def test_generation_bytes_covers_the_measured_kv_cache(tiny_tokenizer, dtype, batch_size, tokens):
    model = make_tiny_model(tiny_tokenizer, dtype=dtype)
    need = _measured_generation_bytes(model, batch_size, tokens)
    # an estimate to plan with: never below what was measured, and not wildly above it
    assert need <= generation_bytes(model, batch_size, tokens) <= 1.5 * need


def test_peak_memory_reports_the_process_peak():
    before = peak_memory()
    big = torch.ones(64 * 2**20 // 4)  # 64 MB touched
    after = peak_memory()
    assert after["peak_rss_bytes"] >= before["peak_rss_bytes"] > 0
    assert after["peak_rss_bytes"] >= big.numel() * 4
    assert ("peak_gpu_bytes" in after) == torch.cuda.is_available()


def test_grid_with_offload_cpu_gives_the_same_files(tiny_pair_dir, tmp_path):
    """The grid streams from CPU memory with `offload="cpu"`: same points and answers, env.json
    records the plan and the peak memory, and a run may resume under another placement."""
    import json

    from landscape.grid import GridConfig, run_grid

    prompts = tmp_path / "p.txt"
    prompts.write_text("How do I bake bread at home?\nTom has 3 apples.\n")
    cfg = dict(
        base=str(tiny_pair_dir["base"]),
        aligned=str(tiny_pair_dir["aligned"]),
        prompts=str(prompts),
        dirs=["aligned", "random:1"],
        steps=3,
        range=(-2.0, 2.0),
        max_new_tokens=6,
        batch_size=2,
        device="cpu",
    )
    runs = {}
    for where in ("none", "cpu"):
        out = tmp_path / where
        run_grid(GridConfig(**cfg, offload=where), out, show_progress=False)
        runs[where] = out
        env = json.loads((out / "env.json").read_text())
        assert env["offload"]["theta0"] == where
        assert env["offload"]["directions"] == [where, where]
        assert env["peak_rss_bytes"] > 0
        assert "offload" not in json.loads((out / "config.json").read_text())
    for name in ("points.jsonl", "generations.jsonl", "summary.json", "config.json"):
        assert (runs["none"] / name).read_bytes() == (runs["cpu"] / name).read_bytes(), name
    answers = {json.loads(x)["answer"] for x in (runs["cpu"] / "generations.jsonl").open()}
    assert len(answers) > 1  # the points differ, so equal files mean equal weights
    run_grid(GridConfig(**cfg, offload="auto"), runs["cpu"], show_progress=False)
