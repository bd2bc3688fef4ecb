"""`AsftPenalty`: λ · Σ_modules pen(ΔW) over a model's LoRA modules or fully trained weights,
one `Anchor` per weight, same-shape LoRA weights batched; the hook of `landscape.train`."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from landscape.asft.penalty.anchor import Anchor, compute_dtype
from landscape.asft.penalty.variants import Variant, parse_variant
from landscape.directions import Direction, match_name
from landscape.directions.lora import PEFT_PREFIX
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)


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
            cand = path.removeprefix(PEFT_PREFIX) + ".weight"
            dname = match_name(cand, names, "LoRA module")
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
                d, self.variant, device=B.device, dtype=compute_dtype(B.dtype), name=dname
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
            pname = match_name(dname, pnames, "direction tensor")
            if pname is None:
                raise LandscapeError(f"the model has no parameter for direction tensor {dname!r}")
            p, d = params[pname], tensors[dname]
            if p.ndim != 2 or tuple(p.shape) != tuple(d.shape):
                raise LandscapeError(
                    f"parameter {pname!r} is {tuple(p.shape)} but direction tensor {dname!r} is {tuple(d.shape)}"
                )
            if not p.requires_grad:
                log.warning("%s is frozen: its penalty term is constant", pname)
            cd = compute_dtype(p.dtype)
            if start is None:
                w0 = p.detach().clone()
            else:
                key = match_name(pname, list(start), "parameter")
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
