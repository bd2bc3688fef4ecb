"""Directions: builders, normalisation, orthogonalisation, cosine, files."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tiny_model
from helpers import pair_delta
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaForCausalLM

from landscape import directions as D
from landscape.directions import ORTHO_FOR_NORM, Direction, builders
from landscape.errors import LandscapeError

# --- helpers ----------------------------------------------------------------------------
shapes = st.lists(
    st.one_of(
        st.tuples(st.integers(1, 6)),
        st.tuples(st.integers(1, 6), st.integers(1, 7)),
        st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=4,
)


def rand_tensors(shape_list, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return {f"t{i}": scale * torch.randn(s, generator=g) for i, s in enumerate(shape_list)}


def rows(t):
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(1, -1)


def close(a, b, rel=1e-5):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-6)


# --- builders ---------------------------------------------------------------------------
def test_aligned_from_a_pair_is_the_known_delta(tiny_pair_dir):
    base = LlamaForCausalLM.from_pretrained(tiny_pair_dir["base"])
    tuned = LlamaForCausalLM.from_pretrained(tiny_pair_dir["aligned"])
    d = D.aligned(base, tuned)
    bp, tp = dict(base.named_parameters()), dict(tuned.named_parameters())
    assert d.names == [n for n in bp if n in d.tensors] and len(d.names) == 14
    assert d.meta["kind"] == "aligned" and d.meta["scope"] == "blocks"
    for n, t in d.tensors.items():
        assert t.dtype == torch.float32 and t.is_contiguous()
        assert torch.equal(t, tp[n] - bp[n])
        assert torch.allclose(t, pair_delta(n, t.shape), atol=1e-6)  # conftest's delta
    # a checkpoint folder gives the same direction, read directly or through transformers
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            d.tensors.values(),
            D.from_checkpoint(tiny_pair_dir["aligned"], base).tensors.values(),
            strict=True,
        )
    )
    d_all = D.from_checkpoint(tiny_pair_dir["aligned"], base, names="blocks+embed", kind="harmful")
    assert (
        d_all.meta["kind"] == "harmful"
        and float(d_all.tensors["lm_head.weight"].abs().max()) == 0.0
    )


def test_from_checkpoint_falls_back_on_transformers(tiny_pair_dir, monkeypatch):
    base = LlamaForCausalLM.from_pretrained(tiny_pair_dir["base"])
    direct = D.from_checkpoint(tiny_pair_dir["aligned"], base)
    monkeypatch.setattr(builders, "_read_folder", lambda path, names: None)
    loaded = D.from_checkpoint(tiny_pair_dir["aligned"], base)
    assert all(torch.equal(direct.tensors[n], loaded.tensors[n]) for n in direct.names)
    with pytest.raises(LandscapeError):
        D.from_checkpoint(tiny_pair_dir["base"] / "nope", base)


def test_delta_of_state_dicts_is_exact_and_checks_names():
    before = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    after = {k: v + 0.5 for k, v in before.items()}
    d = D.delta(after, before, ["b", "a"], kind="benign", sources=["x", "y"])
    assert d.names == ["b", "a"] and d.meta["sources"] == ["x", "y"]
    assert torch.equal(d.tensors["a"], after["a"] - before["a"])
    with pytest.raises(LandscapeError, match="'c'"):
        D.delta(after, before, ["a", "c"])


def test_random_is_deterministic_per_seed_and_name(tiny_tokenizer):
    m32 = make_tiny_model(tiny_tokenizer, seed=0)
    m16 = make_tiny_model(tiny_tokenizer, seed=5, dtype=torch.bfloat16)
    a, b, c = D.random(m32, seed=3), D.random(m16, seed=3), D.random(m32, seed=4)
    assert a.meta["seed"] == 3 and a.meta["kind"] == "random"
    assert all(torch.equal(a.tensors[n], b.tensors[n]) for n in a.names)
    assert not torch.equal(a.tensors[a.names[0]], c.tensors[a.names[0]])
    one = D.random(m32, names=[a.names[5]], seed=3)  # seeding per tensor: subsets agree
    assert torch.equal(one.tensors[a.names[5]], a.tensors[a.names[5]])
    assert all(b.tensors[n].dtype == torch.float32 for n in b.names)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")  # peft's notices
@pytest.mark.parametrize("rslora", [False, True])
def test_from_lora_adapter_equals_merged_minus_original(tiny_tokenizer, tmp_path, rslora):
    from peft import LoraConfig, get_peft_model

    ref = make_tiny_model(tiny_tokenizer, seed=1)
    model = make_tiny_model(tiny_tokenizer, seed=1)
    cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        alpha_pattern={"down_proj": 2},
        use_rslora=rslora,
    )
    pm = get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    pm.save_pretrained(tmp_path / "adapter")
    merged = dict(pm.merge_and_unload().named_parameters())
    orig = dict(ref.named_parameters())

    d = D.from_lora_adapter(tmp_path / "adapter", ref, kind="harmful")
    assert len(d.names) == 2 * 3 + 1 and d.names[0] == "model.embed_tokens.weight"
    for n in orig:
        change = merged[n] - orig[n]
        if n in d.tensors:
            assert float(change.abs().max()) > 0
            assert torch.allclose(d.tensors[n], change, atol=1e-6, rtol=1e-5), n
        else:
            assert float(change.abs().max()) == 0.0

    scoped = D.from_lora_adapter(tmp_path / "adapter", ref, names="blocks")
    assert len(scoped.names) == 14 and "model.embed_tokens.weight" not in scoped.tensors
    assert float(scoped.tensors["model.layers.0.self_attn.k_proj.weight"].abs().max()) == 0.0
    assert torch.equal(
        scoped.tensors["model.layers.1.self_attn.q_proj.weight"],
        d.tensors["model.layers.1.self_attn.q_proj.weight"],
    )
    with pytest.raises(LandscapeError):
        D.from_lora_adapter(tmp_path, ref)


# --- normalisation ----------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**16))
def test_normalisation_defining_properties(shape_list, seed):
    d = Direction(rand_tensors(shape_list, seed))
    ref = rand_tensors(shape_list, seed + 1, scale=3.0)
    none = d.normalized("none")
    assert all(torch.equal(none.tensors[n], d.tensors[n]) for n in d.names)
    assert close(d.normalized("unit").norm(), 1.0)
    ref_norm = math.sqrt(sum(float((t.double() ** 2).sum()) for t in ref.values()))
    assert close(d.normalized("model", ref).norm(), ref_norm)
    layer = d.normalized("layer", ref)
    assert layer.meta["norm"] == "layer"
    for n, t in layer.tensors.items():
        assert close(float(t.norm()), float(ref[n].norm()))
    filt = d.normalized("filter", ref)
    for n, t in filt.tensors.items():
        assert torch.allclose(rows(t).norm(dim=1), rows(ref[n]).norm(dim=1), rtol=1e-5, atol=1e-6)


def test_zero_tensors_and_rows_stay_zero():
    t = torch.randn(4, 3)
    t[1] = 0
    d = Direction({"w": t, "z": torch.zeros(5)})
    ref = {"w": torch.randn(4, 3), "z": torch.randn(5)}
    for mode in ("unit", "model", "layer", "filter"):
        out = d.normalized(mode, ref)
        assert all(torch.isfinite(x).all() for x in out.tensors.values()), mode
        assert (
            float(out.tensors["z"].abs().max()) == 0.0
            and float(out.tensors["w"][1].abs().max()) == 0.0
        )
    zero = Direction({"z": torch.zeros(5)})
    assert zero.normalized("unit").norm() == 0.0 and zero.normalized("model", ref).norm() == 0.0


def test_normalisation_needs_a_matching_reference():
    d = Direction({"w": torch.ones(2, 2)})
    with pytest.raises(LandscapeError):
        d.normalized("layer")
    with pytest.raises(LandscapeError, match="'w'"):
        d.normalized("filter", {"w": torch.ones(3, 2)})
    with pytest.raises(LandscapeError):
        d.normalized("sideways", {"w": torch.ones(2, 2)})


# --- orthogonalisation ------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 2**16), st.sampled_from(sorted(ORTHO_FOR_NORM)))
def test_orthogonalised_then_normalised_plane_has_zero_cosine(shape_list, seed, mode):
    ref = rand_tensors(shape_list, seed + 2, scale=2.0)
    # correlated directions so that orthogonalising has real work to do
    a = Direction(rand_tensors(shape_list, seed))
    b = a.scaled(0.7) + Direction(rand_tensors(shape_list, seed + 1))
    a_hat = a.normalized(mode, ref)
    b_hat = b.orthogonalized(a_hat, ORTHO_FOR_NORM[mode]).normalized(mode, ref)
    assert abs(a_hat.cosine(b_hat)) < 1e-6
    assert b_hat.meta["ortho_granularity"] == ORTHO_FOR_NORM[mode]


def test_global_orthogonalisation_is_not_enough_for_layer_norm():
    g = torch.Generator().manual_seed(0)
    t = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    ref = {"x": 10 * t(6, 5), "y": 0.1 * t(4, 5)}
    a, b = Direction({"x": t(6, 5), "y": t(4, 5)}), Direction({"x": t(6, 5), "y": t(4, 5)})
    b = b + a.scaled(0.5)
    wrong = b.orthogonalized(a, "global")
    assert abs(wrong.cosine(a)) < 1e-6  # orthogonal before normalising ...
    assert (
        abs(wrong.normalized("layer", ref).cosine(a.normalized("layer", ref))) > 1e-3
    )  # ... not after
    right = b.orthogonalized(a, "tensor")
    assert all(abs(c) < 1e-6 for c in right.cosine_per_tensor(a).values())
    assert math.isclose(right.meta["cosine_before"], b.cosine(a))
    assert right.meta["orthogonalized_against"] == "custom"


# --- cosine and algebra -----------------------------------------------------------------
def test_cosine_global_and_per_tensor():
    d1 = Direction(
        {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([1.0, 1.0]), "z": torch.zeros(3)}
    )
    d2 = Direction(
        {"a": torch.tensor([0.0, 2.0]), "b": torch.tensor([2.0, 2.0]), "z": torch.ones(3)}
    )
    assert d1.cosine_per_tensor(d2) == pytest.approx({"a": 0.0, "b": 1.0, "z": 0.0})
    assert d1.cosine(d2) == pytest.approx(4.0 / math.sqrt(3.0 * 15.0))
    assert d1.dot(d2) == pytest.approx(4.0)
    assert d1.cosine(d1.scaled(-3.0)) == pytest.approx(-1.0)
    assert (d1 + d2).tensors["z"].tolist() == [1.0, 1.0, 1.0]
    other = Direction({"a": torch.zeros(2), "c": torch.zeros(2), "z": torch.zeros(3)})
    with pytest.raises(LandscapeError, match="'b'"):
        d1.cosine(other)
    with pytest.raises(LandscapeError, match="'a'"):
        d1.cosine(Direction({"a": torch.zeros(3), "b": torch.zeros(2), "z": torch.zeros(3)}))


def test_direction_is_hashable_by_identity_and_fp32_cpu():
    x = Direction({"w": torch.ones(2, dtype=torch.bfloat16)})
    y = Direction({"w": torch.ones(2)})
    coeffs = {x: 0.1, y: -0.2}
    assert coeffs[x] == 0.1 and coeffs[y] == -0.2 and x != y
    assert x.tensors["w"].dtype == torch.float32 and x.meta["kind"] == "custom"
    assert "Direction(" in repr(x) and "tensor(" not in repr(x)


def test_check_against_model(tiny_model):
    d = D.random(tiny_model, seed=0)
    d.check(tiny_model)
    with pytest.raises(LandscapeError, match="nope"):
        Direction({"nope.weight": torch.zeros(2)}).check(tiny_model)
    with pytest.raises(LandscapeError, match="lm_head.weight"):
        Direction({"lm_head.weight": torch.zeros(2, 2)}).check(tiny_model)


# --- files ------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    g = torch.Generator().manual_seed(1)
    tensors = {
        "z.weight": torch.randn(3, 2, generator=g),
        "a.weight": torch.randn(4, generator=g),
        "m.bias": torch.randn(2, 2, 2, generator=g),
    }
    d = Direction(
        tensors,
        {
            "kind": "harmful",
            "scope": "blocks",
            "norm": "layer",
            "seed": 7,
            "sources": ["p", "q"],
            "extra": {"x": [1, 2]},
        },
    )
    path = d.save(tmp_path / "sub" / "dir.safetensors")
    back = Direction.load(path)
    assert back.names == ["z.weight", "a.weight", "m.bias"]
    assert all(torch.equal(back.tensors[n], d.tensors[n]) for n in d.names)
    assert back.meta == d.meta


def test_load_errors(tmp_path):
    with pytest.raises(LandscapeError, match="not found"):
        Direction.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(LandscapeError, match="cannot read"):
        Direction.load(bad)
