"""How an update sits against a direction, with the penalty's own maths: the shares of its
energy that a variant penalises and lets through."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from landscape.asft.penalty.anchor import Anchor
from landscape.asft.penalty.variants import Variant, parse_variant
from landscape.directions import Direction
from landscape.errors import LandscapeError


def diagnostics(
    delta: Direction | Mapping[str, torch.Tensor],
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
    plus `per_module` {name: norm, cos, along, penalised_share}. `delta` may be any mapping
    of name to tensor, read one tensor at a time (a lazily computed update). Comparing with
    a random direction's shares is the caller's job."""
    v = parse_variant(variant)
    rows: dict[str, dict[str, float]] = {}
    skipped: list[str] = []
    sq = d2 = dot = pen = against = 0.0
    for name, X in (delta.tensors if isinstance(delta, Direction) else delta).items():
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
        main, c = an.dense_parts(X.to(device))
        c, main = float(c), float(main)
        x2 = float(X.to(device, dtype).pow(2).sum())
        one = max(-c * an.inv_n, 0.0) ** 2
        p = main + (one if v.one_sided else 0.0)
        rows[name] = {
            "norm": math.sqrt(x2),
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
