"""The AsFT penalty (paper eq. 2–4) and its variants, in low-rank form.

    L_pen = λ · Σ_modules pen(ΔW),        pen(ΔW) = ‖C⊥ ΔW‖²_F  (+ a one-sided term)

For each adapted weight, d (out×in) is that weight's tensor in an anchor Direction (the
aligned difference θ_a − θ_b; for AsFT-Alt a harmful direction to avoid). ΔW is the LoRA
update *including its scaling*, ΔW = s·B A with B (out×r), A (r×in), s = peft's
`module.scaling[adapter]` (lora_alpha/r, or lora_alpha/√r with rslora) -- the released AsFT
code leaves s out, which weakens the penalty by s² (16 with its α=32, r=8). For full
fine-tuning ΔW = W − W0 with W0 a frozen copy of the starting weights.

Variants (a spec string, see `parse_variant`):

- ``safelora``: C⊥ = I − Ĉ, Ĉ = d dᵀ / ‖d‖_F, the form of the released AsFT and Safe LoRA
  code. The paper's C = d(dᵀd)⁻¹dᵀ is the identity whenever d has full row rank, so it cannot
  be used literally. Ĉ is symmetric with eigenvalues λ_j = σ_j²/‖d‖_F (σ_j the singular
  values of d), so I − Ĉ is symmetric but a projector only when every λ_j is 0 or 1 (e.g. a
  rank-1 d of unit norm); Ĉ(c·d) = c·Ĉ(d), so unlike the projectors below this penalty
  depends on the scale (normalisation) of d.
- ``subspace:k``: C⊥ = I − P, P = U_k U_kᵀ the exact orthogonal projector onto the top-k left
  singular vectors of d.
- ``flat``: the rank-1 projector in the flattened parameter space,
  pen = ‖ΔW‖² − ⟨d, ΔW⟩²/‖d‖².
- ``+one-sided`` (ours, on any of the three): adds relu(−⟨d, ΔW⟩/‖d‖)² per module. A
  projector leaves movement *backwards* along d free, and moving backwards along the aligned
  direction is how fine-tuning can undo alignment.
- ``along-flat``, ``along-subspace:k`` (AsFT-Alt, paper §5; d = the direction to avoid):
  the component inside, ⟨d, ΔW⟩²/‖d‖² resp. ‖P ΔW‖²; inside + outside = ‖ΔW‖².

How each is computed. LoRA (never forms ΔW, out×out or in×in; G = A Aᵀ is r×r; ⟨X, Y⟩ is
Σ X ⊙ Y; costs are for a forward and backward):

- safelora: (I − Ĉ)² = I + U diag(w) Uᵀ with (U, λ) the eigenpairs of Ĉ and w = λ² − 2λ, so
  pen = s²·⟨BᵀB + Fᵀ diag(w) F, G⟩ with F = UᵀB (m×r): two skinny products with U
  (out×m, m = rank d ≤ min(out, in)), O(out·m·r). The released code's dense form costs
  O(out²·in) twice per step.
- subspace:k: pen = s²·⟨MᵀM, G⟩ with M = (I − P)B = B − U(UᵀB): O((out + in)·r² + out·k·r).
- flat: pen = s²·⟨BᵀB, G⟩ − ⟨d, ΔW⟩²/‖d‖², with ⟨d, ΔW⟩ = s·⟨Bᵀd, A⟩: two skinny products
  with d, O(out·in·r). The one-sided term uses the same ⟨d, ΔW⟩.

Full fine-tuning (ΔW = X dense, out×in; marked *dense* where no cheaper form exists):

- safelora (*dense*): pen = ‖X‖² + Σ_j w_j ‖u_jᵀX‖², one product UᵀX of O(out·m·in) (half
  the flops of ‖X‖² − 2⟨X, ĈX⟩ + ‖ĈX‖² with ĈX = d(dᵀX)/‖d‖_F). Ĉ has full rank, so some
  O(out·in·min(out, in)) product is unavoidable.
- subspace:k: pen = ‖X − U(UᵀX)‖², O(out·k·in).
- flat and the one-sided term: ⟨d, X⟩ and ‖X‖², O(out·in).

Precomputed once per run, on the device of the trained weights: ‖d‖, d itself (only where
⟨d, ΔW⟩ is needed: flat and one-sided), and the eigenpairs of the Gram matrix on d's smaller
side (a one-time O(min²·max) product and eigendecomposition, several times faster than an
SVD; safelora keeps every eigenvector with λ_j > 0, subspace the top k). The penalty is
computed in fp32 for fp32/bf16/fp16 weights and in fp64 for fp64 weights.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from landscape.directions import Direction
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)

KINDS = ("safelora", "subspace", "flat")
SPECS_HELP = (
    "safelora, subspace:K, flat (each optionally +one-sided), along-flat or along-subspace:K"
)
_PEFT_PREFIX = "base_model.model."


# --- variants ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """A penalty variant: `kind` in KINDS; `k` the subspace rank; `one_sided` adds
    relu(−⟨d, ΔW⟩/‖d‖)²; `inside` penalises the component inside instead (AsFT-Alt)."""

    kind: str
    k: int | None = None
    one_sided: bool = False
    inside: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LandscapeError(f"unknown AsFT variant kind {self.kind!r}: use {SPECS_HELP}")
        if self.kind == "subspace":
            if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
                raise LandscapeError(
                    f"subspace needs a rank k >= 1, got {self.k!r}: write subspace:K, e.g. subspace:8"
                )
        elif self.k is not None:
            raise LandscapeError(f"AsFT variant {self.kind!r} takes no rank (got k={self.k})")
        if self.inside and self.kind == "safelora":
            raise LandscapeError(
                "along-safelora is not offered (Ĉ is not a projector, so inside + outside "
                "would not split ΔW): use along-flat or along-subspace:K"
            )
        if self.inside and self.one_sided:
            raise LandscapeError(
                "+one-sided does not combine with along-*: along-* already penalises both signs"
            )

    @property
    def spec(self) -> str:
        """The canonical spec string; `parse_variant(v.spec) == v`."""
        base = f"subspace:{self.k}" if self.kind == "subspace" else self.kind
        return ("along-" if self.inside else "") + base + ("+one-sided" if self.one_sided else "")

    @property
    def needs_d(self) -> bool:
        """Whether ⟨d, ΔW⟩ is needed, so d must be kept on the device."""
        return self.kind == "flat" or self.one_sided

    def __str__(self) -> str:
        return self.spec


def parse_variant(spec: str | Variant) -> Variant:
    """`[along-](safelora | subspace:K | flat)[+one-sided]` -> Variant (LandscapeError if bad)."""
    if isinstance(spec, Variant):
        return spec
    if not isinstance(spec, str):
        raise LandscapeError(f"an AsFT variant is a string ({SPECS_HELP}), got {spec!r}")
    s = spec.strip().lower().replace(" ", "")
    base, plus, suffix = s.partition("+")
    if plus and suffix != "one-sided":
        raise LandscapeError(
            f"unknown suffix '+{suffix}' in AsFT variant {spec!r}: the only suffix is +one-sided"
        )
    inside = base.startswith("along-")
    name, colon, karg = base.removeprefix("along-").partition(":")
    if name not in KINDS:
        raise LandscapeError(f"unknown AsFT variant {spec!r}: use {SPECS_HELP}")
    k = None
    if name == "subspace":
        if not colon:
            raise LandscapeError(
                f"AsFT variant {spec!r} needs a rank: write subspace:K (e.g. subspace:8)"
            )
        if not re.fullmatch(r"\d+", karg) or int(karg) < 1:
            raise LandscapeError(
                f"bad subspace rank in {spec!r}: write subspace:K with an integer K >= 1"
            )
        k = int(karg)
    elif colon:
        raise LandscapeError(f"AsFT variant {name!r} takes no rank, got {spec!r}")
    return Variant(name, k, one_sided=bool(plus), inside=inside)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
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
    without λ; see the module docstring for the forms and their costs."""

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
        if self.dnorm == 0 and v.kind != "flat":
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
        st.variant, st.name, st.shape = first.variant, "+".join(a.name for a in anchors), first.shape
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

    def _dense_parts(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        v = self.variant
        X = X.to(self.dtype)
        c = (self.d * X).sum() if self.d is not None else None
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
        main, c = self._dense_parts(X)
        return main + self._one_sided(c) if self.variant.one_sided else main


# --- matching modules to direction tensors -----------------------------------------------
def _match(cand: str, names: Sequence[str], what: str) -> str | None:
    """The direction tensor for `cand` (a model-side weight name), by exact name or else a
    unique dotted-suffix match either way (peft and wrapper prefixes differ)."""
    cand = cand.removeprefix(_PEFT_PREFIX)
    if cand in names:
        return cand
    hits = [n for n in names if n.endswith("." + cand) or cand.endswith("." + n)]
    if len(hits) > 1:
        raise LandscapeError(f"{what} {cand!r} matches several direction tensors: {hits[:4]}")
    return hits[0] if hits else None


def _check_lam(lam: float) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise LandscapeError(f"the AsFT weight λ must be a number, got {lam!r}") from None
    if not math.isfinite(lam) or lam < 0:
        raise LandscapeError(f"the AsFT weight λ must be finite and >= 0, got {lam}")
    return lam


def _tensors(x: Direction | Mapping[str, torch.Tensor] | nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(x, Direction):
        return x.tensors
    if isinstance(x, nn.Module):
        return dict(x.named_parameters())
    if isinstance(x, Mapping):
        return dict(x)
    raise LandscapeError(f"expected a Direction, a state dict or a model, got {type(x).__name__}")


@dataclass
class _Term:
    path: str  # module path (LoRA) or parameter name (full fine-tuning) in the model
    dname: str  # the direction tensor's name
    anchor: Anchor
    module: nn.Module | None = None  # LoRA
    param: nn.Parameter | None = None  # full fine-tuning
    w0: torch.Tensor | None = None  # full fine-tuning


class AsftPenalty:
    """`penalty(model) -> λ · Σ_modules pen(ΔW)`, the hook of `landscape.train.train`.

    `AsftPenalty(peft_model, direction, variant, lam)` covers every peft LoRA `Linear` of
    `adapter_name` (ΔW = scaling·B A); `AsftPenalty.for_full(model, theta0, direction, ...)`
    covers full fine-tuning (ΔW = W − W0). The result is a scalar on the weights' device, in
    fp32 (fp64 for fp64 weights), differentiable in the trained tensors only."""

    def __init__(
        self,
        model: nn.Module,
        direction: Direction,
        variant: str | Variant,
        lam: float,
        adapter_name: str = "default",
    ) -> None:
        from peft.tuners.lora import Linear as LoraLinear
        from peft.tuners.lora import LoraLayer

        self._setup(model, variant, lam)
        self.adapter_name = adapter_name
        t0 = time.perf_counter()
        tensors = _tensors(direction)
        names = list(tensors)
        for path, m in model.named_modules():
            if not isinstance(m, LoraLayer) or adapter_name not in getattr(m, "lora_A", {}):
                continue
            if not isinstance(m, LoraLinear):
                raise LandscapeError(
                    f"LoRA module {path!r} is a {type(m).__name__}: the AsFT penalty supports Linear layers only"
                )
            if m.use_dora.get(adapter_name) or getattr(m, "lora_variant", {}).get(adapter_name):
                raise LandscapeError(
                    f"LoRA module {path!r} uses DoRA or another LoRA variant, whose update is not scaling·B A"
                )
            cand = path.removeprefix(_PEFT_PREFIX) + ".weight"
            dname = _match(cand, names, "LoRA module")
            if dname is None:
                raise LandscapeError(
                    f"the direction has no tensor for LoRA module {path!r} (looked for {cand!r}): "
                    "build it over a scope that covers the adapted weights"
                )
            weight = m.get_base_layer().weight
            d = tensors[dname]
            if tuple(d.shape) != tuple(weight.shape):
                raise LandscapeError(
                    f"LoRA module {path!r} adapts a {tuple(weight.shape)} weight but direction "
                    f"tensor {dname!r} is {tuple(d.shape)}"
                )
            if m.fan_in_fan_out:  # Conv1D-style weights are stored in×out; ΔW is out×in
                d = d.T
            B = m.lora_B[adapter_name].weight
            anchor = Anchor(
                d, self.variant, device=B.device, dtype=_compute_dtype(B.dtype), name=dname
            )
            self._terms.append(_Term(path, dname, anchor, module=m))
        if not self._terms:
            raise LandscapeError(
                f"the model has no LoRA Linear modules for adapter {adapter_name!r}: "
                "wrap it with peft (get_peft_model) first, or use AsftPenalty.for_full"
            )
        self._log_built(len(tensors), time.perf_counter() - t0)

    @classmethod
    def for_full(
        cls,
        model: nn.Module,
        theta0: Direction | Mapping[str, torch.Tensor] | nn.Module | None,
        direction: Direction,
        variant: str | Variant,
        lam: float,
        names: Sequence[str] | None = None,
    ) -> AsftPenalty:
        """The penalty for full fine-tuning, ΔW = W − W0, over the 2-D weights named in
        `direction` (or `names`). `theta0`: the starting weights (a model, a state dict or a
        Direction with the same names); None snapshots the model's current weights. W0 is
        kept on the weights' device (in their dtype when snapshotted)."""
        self = cls.__new__(cls)
        self._setup(model, variant, lam)
        self.adapter_name = None
        t0 = time.perf_counter()
        tensors = _tensors(direction)
        if names is None:
            names = [n for n, t in tensors.items() if t.ndim == 2]
        params = dict(model.named_parameters())
        pnames = list(params)
        start = _tensors(theta0) if theta0 is not None else None
        for dname in names:
            if dname not in tensors:
                raise LandscapeError(f"the direction has no tensor {dname!r}")
            pname = _match(dname, pnames, "direction tensor")
            if pname is None:
                raise LandscapeError(f"the model has no parameter for direction tensor {dname!r}")
            p, d = params[pname], tensors[dname]
            if p.ndim != 2 or tuple(p.shape) != tuple(d.shape):
                raise LandscapeError(
                    f"parameter {pname!r} is {tuple(p.shape)} but direction tensor {dname!r} is {tuple(d.shape)}"
                )
            if not p.requires_grad:
                log.warning("%s is frozen: its penalty term is constant", pname)
            cd = _compute_dtype(p.dtype)
            if start is None:
                w0 = p.detach().clone()
            else:
                key = _match(pname, list(start), "parameter")
                if key is None or tuple(start[key].shape) != tuple(p.shape):
                    raise LandscapeError(f"theta0 has no {tuple(p.shape)} tensor for {pname!r}")
                w0 = start[key].detach().to(device=p.device, dtype=cd).clone()
            anchor = Anchor(d, self.variant, device=p.device, dtype=cd, name=dname)
            self._terms.append(_Term(pname, dname, anchor, param=p, w0=w0))
        if not self._terms:
            raise LandscapeError("the direction has no 2-D weights to anchor full fine-tuning to")
        self._log_built(len(tensors), time.perf_counter() - t0)
        return self

    def _setup(self, model: nn.Module, variant: str | Variant, lam: float) -> None:
        self.variant = parse_variant(variant)
        self.lam = _check_lam(lam)
        self._model = model
        self._terms: list[_Term] = []
        self._groups: list[tuple[list[_Term], Anchor]] | None = None  # built on first call
        self._groups_device: torch.device | None = None

    def _log_built(self, n_dir: int, seconds: float) -> None:
        log.info(
            "AsFT penalty %s, λ=%g: %d %s weights (of %d direction tensors), factors %.1f MB, "
            "precomputed in %.2fs",
            self.variant.spec,
            self.lam,
            len(self._terms),
            "LoRA" if self.adapter_name is not None else "fully trained",
            n_dir,
            self.nbytes / 2**20,
            seconds,
        )

    @property
    def names(self) -> list[str]:
        """The direction tensors the penalty covers, in model order."""
        return [t.dname for t in self._terms]

    @property
    def nbytes(self) -> int:
        """Bytes of precomputed factors (and W0 copies) held on the device."""
        return sum(
            t.anchor.nbytes + (t.w0.numel() * t.w0.element_size() if t.w0 is not None else 0)
            for t in self._terms
        )

    def __repr__(self) -> str:
        return f"AsftPenalty(variant={self.variant.spec!r}, lam={self.lam}, weights={len(self._terms)})"

    def _bind(self, model: nn.Module) -> None:
        # Called with another model object (a reloaded copy): find the same modules there.
        found = dict(model.named_modules() if self.adapter_name else model.named_parameters())
        for t in self._terms:
            if t.path not in found:
                raise LandscapeError(f"the model passed to the penalty has no {t.path!r}")
            if self.adapter_name:
                t.module = found[t.path]
            else:
                t.param = found[t.path]
        self._model = model

    def __call__(self, model: nn.Module | None = None) -> torch.Tensor:
        """λ · Σ pen(ΔW) over the covered weights."""
        if model is not None and model is not self._model:
            self._bind(model)
        if self.adapter_name:
            return self._lora_total() * self.lam
        total: torch.Tensor | None = None
        for t in self._terms:
            if t.anchor.device != t.param.device:
                t.anchor.to_(t.param.device)
                t.w0 = t.w0.to(t.param.device)
            dt = t.anchor.dtype
            v = t.anchor.dense(t.param.to(dt) - t.w0.to(dt))
            total = v if total is None else total + v
        return total * self.lam


    def _lora_total(self) -> torch.Tensor:
        """Σ pen over the LoRA terms, same-shape weights batched together."""
        a = self.adapter_name
        dev = self._terms[0].module.lora_B[a].weight.device
        if self._groups is None or self._groups_device != dev:
            for t in self._terms:
                if t.anchor.device != dev:
                    t.anchor.to_(dev)
            by_key: dict[tuple, list[_Term]] = {}
            for t in self._terms:
                by_key.setdefault(t.anchor.stack_key(), []).append(t)
            self._groups = [(ts, Anchor.stack([t.anchor for t in ts])) for ts in by_key.values()]
            self._groups_device = dev
        total: torch.Tensor | None = None
        for terms, anchor in self._groups:
            B = torch.stack([t.module.lora_B[a].weight for t in terms])
            A = torch.stack([t.module.lora_A[a].weight for t in terms])
            # scaling is read at every call: peft's set_scale / scale_layer change it.
            s = torch.tensor([t.module.scaling[a] for t in terms], dtype=anchor.dtype, device=dev)
            v = anchor.lora(B, A, s).sum()
            total = v if total is None else total + v
        return total


# --- diagnostics ---------------------------------------------------------------------------
def diagnostics(
    delta: Direction,
    direction: Direction,
    variant: str | Variant,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> dict:
    """How an update Δ (e.g. a harmful fine-tune's ΔW, as a Direction) sits against d.

    Over the 2-D tensors of `delta` (others are listed in `skipped`), per module with the
    same maths as the penalty (`Anchor.dense`), then summed:
      cos             ⟨d, Δ⟩ / (‖d‖‖Δ‖), global
      along           ⟨d̂, Δ⟩ with d̂ = d/‖d‖ global (signed: < 0 moves against d)
      along_share     along / ‖Δ‖ (equal to cos)
      against_share   Σ_m relu(−⟨d_m, Δ_m⟩/‖d_m‖)² / ‖Δ‖²: what +one-sided penalises
      penalised_share Σ_m pen_m(Δ_m) / ‖Δ‖² for the variant (one-sided term included)
      allowed_share   1 − penalised_share: the share of ‖Δ‖² the variant lets through. For
                      safelora it can fall outside [0, 1] (I − Ĉ is not a projector).
    plus `per_module` {name: cos, along, penalised_share}. Comparing with a random
    direction's shares is the caller's job."""
    v = parse_variant(variant)
    rows: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    sq = d2 = dot = pen = against = 0.0
    for name, X in delta.tensors.items():
        if X.ndim != 2:
            skipped.append(name)
            continue
        if name not in direction.tensors:
            raise LandscapeError(f"the direction has no tensor {name!r} that the update covers")
        d = direction.tensors[name]
        if tuple(d.shape) != tuple(X.shape):
            raise LandscapeError(
                f"update {name!r} is {tuple(X.shape)} but the direction tensor is {tuple(d.shape)}"
            )
        an = Anchor(d, v, device=device, dtype=dtype, name=name, keep_d=True)
        main, c = an._dense_parts(X.to(device))
        c, main = float(c), float(main)
        x2 = float(X.to(device, dtype).pow(2).sum())
        one = max(-c * an.inv_n, 0.0) ** 2
        p = main + (one if v.one_sided else 0.0)
        rows[name] = {
            "cos": c / (an.dnorm * math.sqrt(x2)) if an.dnorm > 0 and x2 > 0 else 0.0,
            "along": c * an.inv_n,
            "penalised_share": p / x2 if x2 > 0 else 0.0,
        }
        sq, d2, dot, pen, against = sq + x2, d2 + an.dnorm**2, dot + c, pen + p, against + one
    if not rows:
        raise LandscapeError("the update has no 2-D tensors to compare with the direction")
    dn, xn = math.sqrt(d2), math.sqrt(sq)
    along = dot / dn if dn > 0 else 0.0
    return {
        "variant": v.spec,
        "modules": len(rows),
        "skipped": skipped,
        "update_norm": xn,
        "direction_norm": dn,
        "cos": dot / (dn * xn) if dn > 0 and xn > 0 else 0.0,
        "along": along,
        "along_share": along / xn if xn > 0 else 0.0,
        "against_share": against / sq if sq > 0 else 0.0,
        "penalised_share": pen / sq if sq > 0 else 0.0,
        "allowed_share": 1.0 - pen / sq if sq > 0 else 1.0,
        "per_module": rows,
    }
