"""The AsFT penalty as its formulas say, with ΔW materialised and C⊥ an out×out matrix: the
reference the low-rank code is checked against (unit and integration tests alike)."""

from __future__ import annotations

import torch

from landscape.asft.penalty import Variant, parse_variant

F64 = torch.float64


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
