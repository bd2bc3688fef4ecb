"""Exact, in-place perturbation: θ = θ0 + Σ cᵢ·dᵢ inside a context, θ0 restored bit-for-bit.

Each point is computed from a clean θ0 in fp32, never by walking the grid with repeated
add/subtract (which drifts in bf16 and leaves the model changed after an error).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from landscape.directions import Direction
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)
_FP32_MAX = torch.finfo(torch.float32).max


def _params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def snapshot(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Exact clones of the named parameters (same dtype and device)."""
    params = _params(model)
    missing = [n for n in names if n not in params]
    if missing:
        raise LandscapeError(f"model has no parameter {missing[0]!r}")
    return {n: params[n].detach().clone() for n in names}


def _targets(
    model: nn.Module, directions: Iterable[Direction]
) -> tuple[list[str], dict[str, nn.Parameter]]:
    """Union of the directions' names in model order, checked against the model."""
    params = _params(model)
    wanted: set[str] = set()
    for d in directions:
        if not isinstance(d, Direction):
            raise LandscapeError(f"coefficients must be keyed by Direction, got {type(d).__name__}")
        d.check(params)
        wanted.update(d.tensors)
    names = [n for n in params if n in wanted]
    seen: dict[int, str] = {}
    for n in names:
        other = seen.setdefault(id(params[n]), n)
        if other != n:
            raise LandscapeError(
                f"{n!r} and {other!r} are the same (tied) parameter: perturb only one of them"
            )
    return names, params


def _describe(coefficients: Mapping[Direction, float]) -> str:
    return ", ".join(f"{d.meta.get('kind', 'custom')}={c:g}" for d, c in coefficients.items())


@contextmanager
def perturbed(
    model: nn.Module,
    coefficients: Mapping[Direction, float],
    theta0: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[nn.Module]:
    """Set covered parameters to θ0 + Σ cᵢ·dᵢ (fp32, cast to the parameter dtype) and
    restore θ0 exactly on exit, whatever ends the block (KeyboardInterrupt included).

    Pass `theta0` (a `snapshot` taken once per run) to skip cloning at every point. A
    non-finite perturbed weight raises LandscapeError with the model left at θ0."""
    coefficients = {d: float(c) for d, c in coefficients.items()}
    names, params = _targets(model, coefficients)
    if theta0 is None:
        theta0 = snapshot(model, names)
    else:
        for n in names:
            t = theta0.get(n)
            if t is None:
                raise LandscapeError(
                    f"theta0 snapshot has no {n!r}: take it over the directions' names"
                )
            if t.shape != params[n].shape or t.dtype != params[n].dtype:
                raise LandscapeError(
                    f"theta0 snapshot of {n!r} does not match the parameter's shape/dtype"
                )
    active = [(d, c) for d, c in coefficients.items() if c != 0.0]
    # one fp32 scratch buffer per device for the non-fp32 parameters, reused tensor to tensor
    need: dict[torch.device, int] = {}
    for n in names:
        p = params[n]
        if p.dtype != torch.float32:
            need[p.device] = max(need.get(p.device, 0), p.numel())
    scratch: dict[torch.device, torch.Tensor] = {}
    try:
        with torch.no_grad():
            finite = []
            for n in names:
                p = params[n]
                terms = [(d.tensors[n], c) for d, c in active if n in d.tensors]
                if not terms or p.numel() == 0:
                    p.copy_(theta0[n])
                    continue
                if any(not abs(c) <= _FP32_MAX for _, c in terms):  # add_ would refuse it
                    raise LandscapeError(
                        f"non-finite weights in {n!r} at coefficients ({_describe(coefficients)})"
                    )
                if p.dtype == torch.float32:
                    w = p  # a fresh copy of θ0 written straight into the parameter
                else:
                    if p.device not in scratch:
                        scratch[p.device] = torch.empty(
                            need[p.device], dtype=torch.float32, device=p.device
                        )
                    w = scratch[p.device][: p.numel()].view(p.shape)
                w.copy_(theta0[n])
                for t, c in terms:
                    w.add_(t.to(p.device, non_blocking=True), alpha=c)
                if w is not p:
                    p.copy_(w)
                # checked after the cast (bf16/fp16 can overflow where fp32 did not);
                # aminmax propagates NaN/inf and, unlike isfinite, allocates nothing
                ok = torch.isfinite(torch.stack(torch.aminmax(p))).all()
                finite.append(ok.to(finite[0].device) if finite else ok)
            if finite and not bool(torch.stack(finite).all()):
                bad = next(n for n in names if not bool(torch.isfinite(params[n]).all()))
                raise LandscapeError(
                    f"non-finite weights in {bad!r} at coefficients ({_describe(coefficients)})"
                )
        yield model
    finally:
        with torch.no_grad():
            for n in names:
                params[n].copy_(theta0[n])
