"""The AsFT penalty: low-rank forms against dense formulas, projector facts, variant parsing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from penalty_reference import dense_reference
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from landscape.asft.penalty import Anchor, parse_variant
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
