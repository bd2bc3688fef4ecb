"""What a fine-tuning run did to the weights: its update ΔW, module by module, and how that
update sits against the direction the penalty anchors to.

Without these numbers a result cannot be attributed to the direction: an update with almost
no energy along d is shrunk by a "spare d" penalty exactly as plain weight decay would shrink
it. Updates are produced one module at a time (a LoRA module's s·B A is formed only while it
is measured), so a large model never holds all of ΔW at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from landscape.directions import Direction, match_name
from landscape.directions.lora import PEFT_PREFIX


class LazyUpdate(Mapping):
    """ΔW per trained weight, keyed by the direction's tensor names and computed on access:
    s·B A for each peft LoRA Linear (out×in, as the weight), or W − W0 for full
    fine-tuning (`theta0`: the starting weights by name)."""

    def __init__(self, model: nn.Module, names: list[str], theta0: Mapping | None = None):
        self._get: dict[str, object] = {}
        if theta0 is not None:
            params = dict(model.named_parameters())
            for n in names:
                p = match_name(n, list(params), "parameter")
                if p is not None and n in theta0:
                    self._get[n] = (params[p], theta0[n])
            return
        from peft.tuners.lora import LoraLayer

        for path, m in model.named_modules():
            if isinstance(m, LoraLayer) and "default" in getattr(m, "lora_A", {}):
                name = match_name(path.removeprefix(PEFT_PREFIX) + ".weight", names, "module")
                if name is not None:
                    self._get[name] = m

    def __getitem__(self, name: str) -> torch.Tensor:
        got = self._get[name]
        with torch.no_grad():
            if isinstance(got, tuple):
                w, w0 = got
                return (w.detach().float() - w0.float()).cpu()
            B, A = got.lora_B["default"].weight.float(), got.lora_A["default"].weight.float()
            x = (B @ A) * float(got.scaling["default"])
            return (x.T if got.fan_in_fan_out else x).cpu()

    def __iter__(self) -> Iterator[str]:
        return iter(self._get)

    def __len__(self) -> int:
        return len(self._get)


def update_report(update: Mapping, direction: Direction | None, variant: str | None) -> dict:
    """The update's norm in total and per module and, against `direction` with the maths of
    `variant`'s penalty (`landscape.asft.penalty.diagnostics`): the signed share along d
    (cos), its square (the share of ‖ΔW‖² along d), what +one-sided penalises and the share
    the penalty acts on. Without a direction, the norms alone."""
    if direction is not None and variant is not None:
        from landscape.asft.penalty import diagnostics

        rep = diagnostics(update, direction, variant)
        rep["along_energy_share"] = rep["along_share"] ** 2
        rep["anchor"] = direction.meta.get("kind")
        if direction.meta.get("seed") is not None and direction.meta.get("matched_to"):
            rep["anchor"] = f"random:{direction.meta['seed']} (norm-matched)"
        return rep
    per, sq = {}, 0.0
    for name, x in update.items():
        n2 = float(x.double().pow(2).sum())
        per[name] = {"norm": math.sqrt(n2)}
        sq += n2
    return {"update_norm": math.sqrt(sq), "modules": len(per), "per_module": per}


def update_cosine(a: Mapping, b: Mapping) -> float:
    """cos(ΔW_a, ΔW_b) over the modules both cover (0 when either is zero), one module at
    a time."""
    dot = na = nb = 0.0
    for name in a:
        if name not in b:
            continue
        x, y = a[name].double(), b[name].double()
        dot += float((x * y).sum())
        na += float(x.pow(2).sum())
        nb += float(y.pow(2).sum())
    return dot / math.sqrt(na * nb) if na > 0 and nb > 0 else 0.0
