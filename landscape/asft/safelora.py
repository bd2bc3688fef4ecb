"""Safe LoRA, the post-hoc step of the `safelora` method: a trained adapter's B projected
onto the alignment direction in the modules where the update strays from it."""

from __future__ import annotations

import logging

import torch

from landscape.directions import Direction, match_name
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)


def safelora_project(model, direction: Direction, threshold: float, k: int | None) -> dict:
    """Safe LoRA: B ← Ĉ B with Ĉ = d dᵀ/‖d‖_F for the modules whose update keeps less than
    `threshold` cosine with its projection (or the k with the lowest cosine). The cosines are
    computed from the unprojected adapter, all before any module is changed."""
    cosines, projected, modules = {}, {}, {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if not (hasattr(m, "lora_A") and "default" in m.lora_A):
                continue
            dname = match_name(name + ".weight", direction.names, "LoRA module")
            if dname is None:
                raise LandscapeError(f"the direction has no tensor for LoRA module {name}")
            d = direction.tensors[dname].to(torch.float64)
            a, b = m.lora_A["default"].weight.double(), m.lora_B["default"].weight.double()
            cb = d @ (d.T @ b) / d.norm()
            aat = a @ a.T
            inner = torch.trace((cb.T @ b) @ aat)
            norms = torch.sqrt(torch.trace((cb.T @ cb) @ aat) * torch.trace((b.T @ b) @ aat))
            cosines[name] = (inner / norms).item() if norms > 0 else 1.0
            projected[name], modules[name] = cb, m
        ranked = sorted(cosines, key=cosines.get)
        chosen = ranked[:k] if k is not None else [n for n in ranked if cosines[n] < threshold]
        for name in chosen:
            b = modules[name].lora_B["default"].weight
            b.copy_(projected[name].to(b))
    log.info("safe lora projected %d of %d modules", len(chosen), len(cosines))
    return {"projected": chosen, "cosines": cosines}
