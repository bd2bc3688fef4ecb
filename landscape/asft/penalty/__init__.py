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
  ``along-flat`` on d_aligned is also the paper's Fig. 4(b) ablation (constraining the
  update along the alignment direction instead of outside it).
- ``l2`` (a control, ours): pen = ‖ΔW‖², plain weight shrinkage that ignores d. A variant
  whose effect is the same as l2's has not shown that the direction matters.

How each is computed. LoRA (never forms ΔW, out×out or in×in; G = A Aᵀ is r×r; ⟨X, Y⟩ is
Σ X ⊙ Y; costs are for a forward and backward):

- safelora: (I − Ĉ)² = I + U diag(w) Uᵀ with (U, λ) the eigenpairs of Ĉ and w = λ² − 2λ, so
  pen = s²·⟨BᵀB + Fᵀ diag(w) F, G⟩ with F = UᵀB (m×r): two skinny products with U
  (out×m, m = rank d ≤ min(out, in)), O(out·m·r). The released code's dense form costs
  O(out²·in) twice per step.
- subspace:k: pen = s²·⟨MᵀM, G⟩ with M = (I − P)B = B − U(UᵀB): O((out + in)·r² + out·k·r).
- flat: pen = s²·⟨BᵀB, G⟩ − ⟨d, ΔW⟩²/‖d‖², with ⟨d, ΔW⟩ = s·⟨Bᵀd, A⟩: two skinny products
  with d, O(out·in·r). The one-sided term uses the same ⟨d, ΔW⟩.
- l2: pen = s²·⟨BᵀB, G⟩, O((out + in)·r²).

Full fine-tuning (ΔW = X dense, out×in; marked *dense* where no cheaper form exists):

- safelora (*dense*): pen = ‖X‖² + Σ_j w_j ‖u_jᵀX‖², one product UᵀX of O(out·m·in) (half
  the flops of ‖X‖² − 2⟨X, ĈX⟩ + ‖ĈX‖² with ĈX = d(dᵀX)/‖d‖_F). Ĉ has full rank, so some
  O(out·in·min(out, in)) product is unavoidable.
- subspace:k: pen = ‖X − U(UᵀX)‖², O(out·k·in).
- flat and the one-sided term: ⟨d, X⟩ and ‖X‖², O(out·in); l2: ‖X‖².

Precomputed once per run, on the device of the trained weights: ‖d‖, d itself (only where
⟨d, ΔW⟩ is needed: flat and one-sided), and the eigenpairs of the Gram matrix on d's smaller
side (a one-time O(min²·max) product and eigendecomposition, several times faster than an
SVD; safelora keeps every eigenvector with λ_j > 0, subspace the top k). The penalty is
computed in fp32 for fp32/bf16/fp16 weights and in fp64 for fp64 weights.

Modules: `variants` (the spec grammar), `anchor` (one weight's factors and pen), `penalty`
(`AsftPenalty` over a model), `diagnostics` (how an update sits against d).
"""

from landscape.asft.penalty.anchor import Anchor, compute_dtype
from landscape.asft.penalty.diagnostics import diagnostics
from landscape.asft.penalty.penalty import AsftPenalty
from landscape.asft.penalty.variants import KINDS, SPECS_HELP, Variant, parse_variant

__all__ = [
    "KINDS",
    "SPECS_HELP",
    "Anchor",
    "AsftPenalty",
    "Variant",
    "compute_dtype",
    "diagnostics",
    "parse_variant",
]
