"""The AsFT penalty: low-rank forms against dense formulas, projector facts, peft LoRA scaling."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_model
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from landscape import directions as D
from landscape.asft.penalty import Anchor, AsftPenalty, Variant, diagnostics, parse_variant
from landscape.errors import LandscapeError

F64 = torch.float64
VARIANTS = [
    "safelora",
    "safelora+one-sided",
    "subspace:{k}",
    "subspace:{k}+one-sided",
    "along-subspace:{k}",
    "flat",
    "flat+one-sided",
    "along-flat",
]
FAST = settings(max_examples=60, deadline=None)


# --- the dense reference: ΔW materialised, C⊥ an out×out matrix ---------------------------
def dense_reference(dW: torch.Tensor, d: torch.Tensor, variant: str | Variant) -> float:
    v = parse_variant(variant)
    dW, d = dW.detach().to(F64), d.to(F64)
    eye = torch.eye(d.shape[0], dtype=F64)
    along = (d * dW).sum() / d.norm()
    if v.kind == "safelora":
        pen = ((eye - d @ d.T / d.norm()) @ dW).pow(2).sum()
    elif v.kind == "subspace":
        U = torch.linalg.svd(d)[0][:, : v.k]  # an SVD, not the Gram eigh the code uses
        P = U @ U.T
        pen = ((P if v.inside else eye - P) @ dW).pow(2).sum()
    elif v.inside:
        pen = along**2
    else:  # the flattened rank-1 projector, applied explicitly
        pen = (dW - (d * dW).sum() / d.pow(2).sum() * d).pow(2).sum()
    if v.one_sided:
        pen = pen + torch.relu(-along) ** 2
    return float(pen)


def close(a: float, b: float, scale: float, rel: float = 1e-5) -> bool:
    """|a − b| ≤ rel·|b|, with a floor relative to ‖ΔW‖² for values that are zero."""
    return abs(a - b) <= rel * abs(b) + 1e-10 * scale


@st.composite
def problems(draw):
    out, inn = draw(st.integers(2, 40)), draw(st.integers(2, 40))
    r = draw(st.integers(1, 6))
    k = draw(st.integers(1, min(out, inn)))
    spec = draw(st.sampled_from(VARIANTS)).format(k=k)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    d = torch.randn(out, inn, generator=g, dtype=F64)
    B = torch.randn(out, r, generator=g, dtype=F64)
    A = torch.randn(r, inn, generator=g, dtype=F64)
    s = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    return spec, d, B, A, s


@FAST
@given(problems())
def test_low_rank_and_dense_forms_equal_the_dense_formula(problem):
    spec, d, B, A, s = problem
    dW = s * B @ A
    ref, scale = dense_reference(dW, d, spec), float(dW.pow(2).sum())
    an = Anchor(d, spec, dtype=F64)
    assert close(float(an.lora(B, A, s)), ref, scale), spec
    assert close(float(an.dense(dW)), ref, scale), spec


@FAST
@given(problems())
def test_inside_plus_outside_is_the_whole_update(problem):
    _, d, B, A, s = problem
    k = min(d.shape) // 2 + 1
    sq = float((s * B @ A).pow(2).sum())
    for kind in ("flat", f"subspace:{k}"):
        out = float(Anchor(d, kind, dtype=F64).lora(B, A, s))
        inside = float(Anchor(d, "along-" + kind, dtype=F64).lora(B, A, s))
        assert abs(out + inside - sq) <= 1e-9 * sq, kind


@FAST
@given(st.integers(2, 30), st.integers(2, 30), st.data())
def test_subspace_factor_is_a_symmetric_idempotent_projector(out, inn, data):
    k = data.draw(st.integers(1, min(out, inn)))
    d = torch.randn(out, inn, generator=torch.Generator().manual_seed(out * 97 + inn), dtype=F64)
    U = Anchor(d, f"subspace:{k}", dtype=F64).U
    P = U @ U.T
    assert torch.allclose(P @ P, P, atol=1e-10) and torch.allclose(P, P.T, atol=1e-12)
    top = torch.linalg.svd(d)[0][:, :k]  # same subspace as an SVD's top k
    assert torch.allclose(P, top @ top.T, atol=1e-8)


@FAST
@given(st.integers(2, 30), st.integers(2, 30))
def test_safelora_eigen_form_equals_the_square_of_i_minus_c(out, inn):
    d = torch.randn(out, inn, generator=torch.Generator().manual_seed(out + 31 * inn), dtype=F64)
    an = Anchor(d, "safelora", dtype=F64)
    eye = torch.eye(out, dtype=F64)
    c_perp = eye - d @ d.T / d.norm()
    assert torch.allclose(eye + an.U @ torch.diag(an.w) @ an.U.T, c_perp @ c_perp, atol=1e-10)


def test_safelora_i_minus_c_is_symmetric_but_not_idempotent():
    """I − Ĉ with Ĉ = d dᵀ/‖d‖_F is symmetric, but a projector only when Ĉ's eigenvalues
    σ_j²/‖d‖_F are all 0 or 1: true for a unit-norm rank-1 d, false in general."""
    g = torch.Generator().manual_seed(0)
    for out, inn in ((8, 12), (12, 8), (16, 16)):
        d = torch.randn(out, inn, generator=g, dtype=F64)
        M = torch.eye(out, dtype=F64) - d @ d.T / d.norm()
        assert torch.allclose(M, M.T, atol=1e-12)
        assert (M @ M - M).norm() > 0.1 * M.norm()
    u, w = torch.randn(10, 1, dtype=F64), torch.randn(1, 7, dtype=F64)
    d = u @ w / (u.norm() * w.norm())
    M = torch.eye(10, dtype=F64) - d @ d.T / d.norm()
    assert torch.allclose(M @ M, M, atol=1e-12)


@pytest.mark.parametrize("c", [0.7, -0.7])
def test_flat_removes_exactly_the_component_along_d(c):
    g = torch.Generator().manual_seed(1)
    B0, A0 = torch.randn(20, 3, generator=g, dtype=F64), torch.randn(3, 30, generator=g, dtype=F64)
    d, s = B0 @ A0, 2.0  # rank 3, so ΔW = c·d is a LoRA update
    B = (c / s) * B0
    dW = c * d
    norm2 = float(dW.pow(2).sum())
    for form in ("lora", "dense"):

        def pen(spec, form=form):
            an = Anchor(d, spec, dtype=F64)
            return float(an.lora(B, A0, s) if form == "lora" else an.dense(dW))

        assert pen("flat") <= 1e-12 * norm2
        one = pen("flat+one-sided")
        if c > 0:
            assert one <= 1e-12 * norm2
        else:
            assert one == pytest.approx(norm2, rel=1e-10)  # relu(−c‖d‖)² = ‖ΔW‖²
        assert pen("along-flat") == pytest.approx(norm2, rel=1e-10)


def test_zero_penalty_inside_the_subspace():
    g = torch.Generator().manual_seed(2)
    d = torch.randn(24, 18, generator=g, dtype=F64)
    for k in (1, 4, 9):
        Uk = torch.linalg.svd(d)[0][:, :k]
        B = Uk @ torch.randn(k, 5, generator=g, dtype=F64)
        A = torch.randn(5, 18, generator=g, dtype=F64)
        norm2 = float((3.0 * B @ A).pow(2).sum())
        assert float(Anchor(d, f"subspace:{k}", dtype=F64).lora(B, A, 3.0)) <= 1e-12 * norm2
        inside = float(Anchor(d, f"along-subspace:{k}", dtype=F64).lora(B, A, 3.0))
        assert inside == pytest.approx(norm2, rel=1e-10)


def test_rank_deficient_direction():
    """A low-rank d: safelora keeps only Ĉ's nonzero eigenvectors and stays exact; a subspace
    wider than the rank still penalises nothing inside range(d)."""
    g = torch.Generator().manual_seed(3)
    for out, inn in ((30, 12), (12, 30)):
        d = torch.randn(out, 2, generator=g, dtype=F64) @ torch.randn(
            2, inn, generator=g, dtype=F64
        )
        B, A = (
            torch.randn(out, 3, generator=g, dtype=F64),
            torch.randn(3, inn, generator=g, dtype=F64),
        )
        an = Anchor(d, "safelora", dtype=F64)
        assert an.U.shape[1] == 2
        assert close(float(an.lora(B, A, 1.5)), dense_reference(1.5 * B @ A, d, "safelora"), 1.0)
        inside = d[:, :3].clone()  # columns of d lie in range(d)
        assert float(Anchor(d, "subspace:5", dtype=F64).lora(inside, A, 1.0)) < 1e-16 * float(
            (inside @ A).pow(2).sum()
        )


class _LargestNew(TorchDispatchMode):
    """The largest tensor an op allocates (views of its inputs excluded)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ptrs = {
            t.untyped_storage().data_ptr()
            for t in tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in ptrs:
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("spec", [v.format(k=4) for v in VARIANTS])
def test_lora_form_allocates_no_matrix_of_the_weight_size(spec):
    """Forward and backward allocate at most max(out, in)·r entries: neither ΔW (out×in) nor
    any out×out matrix is formed."""
    out, inn, r = 48, 40, 2
    g = torch.Generator().manual_seed(4)
    an = Anchor(torch.randn(out, inn, generator=g), spec)
    B = torch.randn(out, r, generator=g).requires_grad_()
    A = torch.randn(r, inn, generator=g).requires_grad_()
    with _LargestNew() as mode:
        an.lora(B, A, 2.0).backward()
    assert 0 < mode.numel <= max(out, inn) * r


# --- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        "safelora",
        "subspace:8",
        "flat",
        "flat+one-sided",
        "subspace:3+one-sided",
        "safelora+one-sided",
        "along-flat",
        "along-subspace:2",
    ],
)
def test_specs_round_trip(spec):
    v = parse_variant(spec)
    assert v.spec == spec and parse_variant(v.spec) == v and parse_variant(v) is v


@pytest.mark.parametrize(
    "spec,words",
    [
        ("subspace", "subspace:K"),
        ("subspace:0", "K >= 1"),
        ("subspace:-2", "K >= 1"),
        ("subspace:x", "K >= 1"),
        ("bogus", "unknown AsFT variant"),
        ("flat:3", "takes no rank"),
        ("flat+two-sided", "+one-sided"),
        ("along-safelora", "along-flat"),
        ("along-flat+one-sided", "along-*"),
        ("", "unknown AsFT variant"),
    ],
)
def test_bad_specs_raise_one_clear_line(spec, words):
    with pytest.raises(LandscapeError) as e:
        parse_variant(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_subspace_rank_above_the_matrix_rank_bound_raises():
    with pytest.raises(LandscapeError, match="w.0"):
        Anchor(torch.randn(4, 6), "subspace:5", name="w.0")


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
