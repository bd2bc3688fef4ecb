"""One weight's penalty: the factors precomputed from its direction tensor d (the anchor),
and pen(ΔW) in low-rank (LoRA) and dense (full fine-tuning) form."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from landscape.asft.penalty.variants import Variant, parse_variant
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision sums of squares over millions of entries lose most of their digits.
    return torch.float64 if dtype == torch.float64 else torch.float32


# --- per-weight factors ------------------------------------------------------------------
def _left_spectrum(d: torch.Tensor, k: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, σ²) with σ² descending and U's columns the matching left singular vectors of d:
    the top k, or (k None) every one with σ² above round-off.

    From the eigendecomposition of the Gram matrix on d's smaller side (one-time and transient,
    never larger than d itself; several times faster than an SVD). σ² comes out with absolute error ~ε·σ₁², harmless here:
    the penalties depend smoothly on σ² and the subspaces only on well-separated top vectors."""
    out, inn = d.shape
    eps = torch.finfo(d.dtype).eps
    if out <= inn:
        ev, vec = torch.linalg.eigh(d @ d.T)
        ev, U = ev.flip(0).clamp_min(0), vec.flip(1)
        if k is not None:
            return U[:, :k], ev[:k]
        keep = ev > ev[0] * max(out, inn) * eps
        return U[:, keep], ev[keep]
    ev, V = torch.linalg.eigh(d.T @ d)
    ev, V = ev.flip(0).clamp_min(0), V.flip(1)
    good = int((ev > ev[0] * max(out, inn) * eps).sum())
    if k is not None and k > good:
        # d has rank < k: the top-k subspace is not unique; an SVD completes it orthonormally.
        log.warning("direction has rank %d < k=%d: the top-k subspace is not unique", good, k)
        U, S, _ = torch.linalg.svd(d, full_matrices=False)
        return U[:, :k], S[:k] ** 2
    n = good if k is None else k
    U = (d @ V[:, :n]) / ev[:n].sqrt()
    return U, ev[:n]


class Anchor:
    """The precomputed factors of one weight's penalty, and the penalty itself.

    Built once from the direction tensor d (out×in, already in the weight's out×in layout)
    for one variant. `lora(B, A, s)` and `dense(X)` return pen(ΔW) for ΔW = s·B A resp. X,
    without λ; see `landscape.asft.penalty` for the forms and their costs."""

    def __init__(
        self,
        d: torch.Tensor,
        variant: str | Variant,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        name: str = "weight",
        keep_d: bool = False,
    ) -> None:
        self.variant = v = parse_variant(variant)
        self.name = name
        if d.ndim != 2:
            raise LandscapeError(
                f"the AsFT penalty needs a matrix at {name!r}, got shape {tuple(d.shape)}"
            )
        d = d.detach().to(device=device, dtype=dtype).contiguous()
        self.shape = tuple(d.shape)
        self.dtype, self.device = dtype, d.device
        self.dnorm = float(torch.linalg.vector_norm(d))
        # ⟨d̂, ΔW⟩ := 0 on a zero d: nothing to be aligned with (Ĉ = P = 0 there too).
        self.inv_n = 1.0 / self.dnorm if self.dnorm > 0 else 0.0
        self.d = d if (v.needs_d or keep_d) else None
        self.U: torch.Tensor | None = None
        self.w: torch.Tensor | None = None
        out, inn = self.shape
        if v.kind == "subspace" and v.k > min(out, inn):
            raise LandscapeError(
                f"{v.spec} exceeds the rank bound of {name!r} ({out}×{inn}): use k <= {min(out, inn)}"
            )
        if v.kind == "l2":
            pass  # ‖ΔW‖²: nothing to precompute, d plays no part
        elif self.dnorm == 0 and v.kind != "flat":
            log.warning("direction tensor %s is zero: nothing is allowed there", name)
            self.U = torch.zeros((out, 0), dtype=dtype, device=d.device)
            self.w = torch.zeros(0, dtype=dtype, device=d.device)
        elif v.kind == "subspace":
            U, _ = _left_spectrum(d, v.k)
            # Re-orthonormalise (cheap, out·k²) so that P = U Uᵀ is a projector to round-off
            # also when U came from d V / σ.
            self.U = torch.linalg.qr(U).Q.contiguous()
        elif v.kind == "safelora":
            U, s2 = _left_spectrum(d, None)
            ev = s2 / self.dnorm  # eigenvalues of Ĉ = d dᵀ/‖d‖_F
            self.U, self.w = U.contiguous(), ev * ev - 2 * ev  # (I − Ĉ)² = I + U diag(w) Uᵀ

    @property
    def nbytes(self) -> int:
        """Bytes held on the device by this anchor's factors."""
        return sum(t.numel() * t.element_size() for t in (self.d, self.U, self.w) if t is not None)

    def to_(self, device: torch.device | str) -> Anchor:
        """Move the factors (when the model was moved after the penalty was built)."""
        for attr in ("d", "U", "w"):
            t = getattr(self, attr)
            if t is not None:
                setattr(self, attr, t.to(device))
        self.device = torch.device(device)
        return self

    # The main term (the variant without its one-sided part) and c = ⟨d, ΔW⟩ (None when d is
    # not kept). Both forms below share the one-sided and diagnostics code.
    def _lora_parts(
        self, B: torch.Tensor, A: torch.Tensor, s: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Written for one weight (B out×r, A r×in) and, unchanged, for a stack of same-shape
        # weights (a leading group dimension, see `Anchor.stack`): .mT and sums over the last
        # two dimensions mean the same thing in both cases.
        v = self.variant
        B, A = B.to(self.dtype), A.to(self.dtype)
        G = A @ A.mT
        c = None
        if self.d is not None:
            # d on the right both here and in the backward ((s·g·A) @ dᵀ): BLAS runs dᵀ @ skinny
            # several times slower than skinny @ d or skinny @ dᵀ on CPU.
            c = s * ((B.mT @ self.d) * A).sum((-2, -1))
        if v.kind == "l2":
            return s * s * ((B.mT @ B) * G).sum((-2, -1)), c
        if v.kind == "flat":
            along2 = (c * self.inv_n) ** 2
            if v.inside:
                return along2, c
            # ‖ΔW‖² − ⟨d̂, ΔW⟩² ≥ 0; the clamp only removes round-off below zero.
            return (s * s * ((B.mT @ B) * G).sum((-2, -1)) - along2).clamp_min(0), c
        Ft = B.mT @ self.U  # Fᵀ = (UᵀB)ᵀ, r×m: U on the right for the same reason
        if v.kind == "subspace":
            if v.inside:
                return s * s * ((Ft @ Ft.mT) * G).sum((-2, -1)), c
            M = B - self.U @ Ft.mT  # (I − P)B, out×r: exact residual, no cancellation
            return s * s * ((M.mT @ M) * G).sum((-2, -1)), c
        H = B.mT @ B + (Ft * self.w) @ Ft.mT  # Bᵀ(I − Ĉ)²B, r×r
        return (s * s * (H * G).sum((-2, -1))).clamp_min(0), c

    @classmethod
    def stack(cls, anchors: Sequence[Anchor]) -> Anchor:
        """One anchor for several same-shape weights: their factors stacked along a leading
        dimension, so that `lora` on stacked B and A costs a few batched products instead of
        a few products per weight (per-call overhead dominates small layers)."""
        first = anchors[0]
        st = cls.__new__(cls)
        st.variant, st.name, st.shape = (
            first.variant,
            "+".join(a.name for a in anchors),
            first.shape,
        )
        st.dtype, st.device = first.dtype, first.device
        st.dnorm = None
        st.inv_n = torch.tensor([a.inv_n for a in anchors], dtype=first.dtype, device=first.device)
        st.d = torch.stack([a.d for a in anchors]) if first.d is not None else None
        st.U = st.w = None
        if first.U is not None:
            # Ĉ's spectrum keeps as many vectors as each d's numerical rank: pad with zero
            # columns (and zero weights), which add nothing to Fᵀ diag(w) F or to U Uᵀ.
            m = max(a.U.shape[1] for a in anchors)
            st.U = torch.stack([F.pad(a.U, (0, m - a.U.shape[1])) for a in anchors])
            if first.w is not None:
                st.w = torch.stack([F.pad(a.w, (0, m - a.w.shape[0])) for a in anchors])[:, None, :]
        return st

    def stack_key(self) -> tuple:
        """Anchors with equal keys can be stacked."""
        return (self.shape, self.dtype, self.device, self.d is None, self.U is None, self.w is None)

    def dense_parts(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = self.variant
        X = X.to(self.dtype)
        c = (self.d * X).sum() if self.d is not None else None
        if v.kind == "l2":
            return X.pow(2).sum(), c
        if v.kind == "flat":
            along2 = (c * self.inv_n) ** 2
            return (along2 if v.inside else (X.pow(2).sum() - along2).clamp_min(0)), c
        F = self.U.T @ X
        if v.kind == "subspace":
            return (F.pow(2).sum() if v.inside else (X - self.U @ F).pow(2).sum()), c
        return (X.pow(2).sum() + (self.w[:, None] * F.pow(2)).sum()).clamp_min(0), c

    def _one_sided(self, c: torch.Tensor) -> torch.Tensor:
        return torch.relu(-c * self.inv_n) ** 2

    def lora(self, B: torch.Tensor, A: torch.Tensor, scaling: float) -> torch.Tensor:
        """pen(ΔW) for ΔW = scaling·B A (B out×r, A r×in), differentiable in B and A."""
        main, c = self._lora_parts(B, A, scaling)
        return main + self._one_sided(c) if self.variant.one_sided else main

    def dense(self, X: torch.Tensor) -> torch.Tensor:
        """pen(X) for a dense update X (out×in), differentiable in X."""
        main, c = self.dense_parts(X)
        return main + self._one_sided(c) if self.variant.one_sided else main
