"""Exact, in-place perturbation: θ = θ0 + Σ cᵢ·dᵢ inside a context, θ0 restored bit-for-bit.

Each point is computed from a clean θ0 in fp32, never by walking the grid with repeated
add/subtract (which drifts in bf16 and leaves the model changed after an error).

Where θ0 and the directions live is a run's choice (`plan_offload`): on the model's device
(`none`: nothing offloaded), or in CPU memory (`cpu`: pinned when CUDA is present), from
where `perturbed` streams them to the model's device one tensor at a time. Either way the
sum is formed per tensor on the model's device and restore is a copy from θ0.
"""

from __future__ import annotations

import copy
import logging
import resource
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from landscape.directions import Direction
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)
_FP32_MAX = torch.finfo(torch.float32).max

OFFLOADS = ("auto", "none", "cpu")
# Left free on the GPU by `auto` for generation (KV cache, activations, logits) when the
# caller gives no estimate of its own.
DEFAULT_RESERVE_FRACTION = 0.25
_PIN_FAILED = False  # once pinning fails, later tensors go straight to pageable memory


class HostTensors(dict):
    """name -> tensor held in CPU memory for a model that computes elsewhere.

    `perturbed` never reads these in place: it copies each one to the parameter's device
    through a staging buffer just before use, so only one tensor at a time is resident
    there. On a CPU-only machine the copies are real too (a separate store), which is how the
    streaming path is exercised without a GPU."""


def _params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def _check_offload(where: str) -> None:
    if where not in ("none", "cpu"):
        raise LandscapeError(
            f"unknown offload {where!r}: use none or cpu (auto goes through plan_offload)"
        )


def _host_copy(t: torch.Tensor, pin: bool) -> torch.Tensor:
    """A CPU copy of `t` that shares no memory with it; pinned (page-locked) when asked, so
    host-to-GPU copies can run asynchronously and at full bandwidth."""
    global _PIN_FAILED
    if pin and not _PIN_FAILED:
        try:
            out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            return out.copy_(t.detach())
        except RuntimeError as e:  # pinned memory is a limited resource: fall back on pageable
            _PIN_FAILED = True
            log.warning("cannot pin host memory (%s); using pageable memory from here on", e)
    return t.detach().to("cpu", copy=True)


def snapshot(
    model: nn.Module, names: Iterable[str], offload: str = "none"
) -> dict[str, torch.Tensor]:
    """Exact copies of the named parameters, in their dtype.

    `offload="none"`: clones on each parameter's device. `"cpu"`: a `HostTensors` of CPU
    copies (pinned when CUDA is present), streamed back by `perturbed`."""
    _check_offload(offload)
    params = _params(model)
    names = list(names)
    missing = [n for n in names if n not in params]
    if missing:
        raise LandscapeError(f"model has no parameter {missing[0]!r}")
    if offload == "none":
        return {n: params[n].detach().clone() for n in names}
    pin = torch.cuda.is_available()
    return HostTensors({n: _host_copy(params[n], pin) for n in names})


def hold(direction: Direction, model: nn.Module, offload: str = "none") -> Direction:
    """The same direction (meta copied) with its fp32 tensors where a run keeps them.

    `"none"`: on the device of the parameter each perturbs (no copy when that is the CPU).
    `"cpu"`: a `HostTensors`, pinned copies when CUDA is present (drop the original to free
    its memory), the original CPU tensors otherwise."""
    _check_offload(offload)
    params = _params(model)
    direction.check(params)
    if offload == "none":
        tensors = {n: t.to(params[n].device) for n, t in direction.tensors.items()}
    else:
        pin = torch.cuda.is_available()
        tensors = HostTensors(
            {n: _host_copy(t, pin) if pin else t.to("cpu") for n, t in direction.tensors.items()}
        )
    held = copy.copy(direction)  # not the constructor: it would bring the tensors back to CPU
    held.tensors = tensors
    held.meta = dict(direction.meta)
    return held


def plan_offload(
    model: nn.Module,
    names: Sequence[str],
    n_directions: int,
    offload: str = "auto",
    reserve_bytes: int | None = None,
) -> dict:
    """Where θ0 and each direction are kept: `{"theta0": "none"|"cpu", "directions": [...],
    ...}` plus the byte counts the choice was made from.

    `none`/`cpu` put everything in one place. `auto` keeps everything on a CPU model's
    device; on a GPU it puts θ0 first (it is read twice per point), then the directions in
    order, on the GPU while they fit in the free memory less `reserve_bytes` (default a
    quarter of the GPU's memory, for generation), and the rest in CPU memory."""
    if offload not in OFFLOADS:
        raise LandscapeError(f"unknown offload {offload!r}: use one of {', '.join(OFFLOADS)}")
    params = _params(model)
    missing = [n for n in names if n not in params]
    if missing:
        raise LandscapeError(f"model has no parameter {missing[0]!r}")
    theta_b = sum(params[n].numel() * params[n].element_size() for n in names)
    dir_b = sum(params[n].numel() for n in names) * 4  # directions are fp32
    plan = {"offload": offload, "theta0_bytes": theta_b, "direction_bytes": dir_b}
    device = params[names[0]].device if names else torch.device("cpu")
    if offload != "auto":
        return {**plan, "theta0": offload, "directions": [offload] * n_directions}
    if device.type != "cuda":
        return {**plan, "theta0": "none", "directions": ["none"] * n_directions}
    free, total = torch.cuda.mem_get_info(device)
    reserve = int(DEFAULT_RESERVE_FRACTION * total) if reserve_bytes is None else reserve_bytes
    where = fit_in_order([theta_b] + [dir_b] * n_directions, free - reserve)
    plan.update(
        {
            "theta0": where[0],
            "directions": where[1:],
            "gpu_free_bytes": free,
            "gpu_total_bytes": total,
            "reserve_bytes": reserve,
        }
    )
    log.info(
        "offload plan: theta0 %s, directions %s (theta0 %.2f GB, each direction %.2f GB, "
        "%.2f GB free on the GPU, %.2f GB kept for generation)",
        "on the GPU" if where[0] == "none" else "in CPU memory",
        ", ".join("GPU" if w == "none" else "CPU" for w in where[1:]),
        theta_b / 1e9,
        dir_b / 1e9,
        free / 1e9,
        reserve / 1e9,
    )
    return plan


def fit_in_order(sizes: Sequence[int], budget: int) -> list[str]:
    """`none` (on the device) for each size, in order, while the running total stays within
    `budget`; `cpu` for one that does not fit (a later, smaller one may still fit)."""
    where = []
    for size in sizes:
        if size <= budget:
            where.append("none")
            budget -= size
        else:
            where.append("cpu")
    return where


def generation_bytes(model: nn.Module, batch_size: int, tokens: int) -> int:
    """Rough GPU memory that batched generation needs beyond the weights: the KV cache of
    `batch_size` sequences of `tokens` in the model's dtype, plus fp32 logits of one step,
    plus a quarter again for activations and allocator slack."""
    cfg = getattr(model, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    p = next(model.parameters())
    layers = getattr(cfg, "num_hidden_layers", 0) or 0
    heads = getattr(cfg, "num_attention_heads", 0) or 0
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (
        (getattr(cfg, "hidden_size", 0) or 0) // max(heads, 1)
    )
    vocab = getattr(cfg, "vocab_size", 0) or 0
    kv = 2 * layers * kv_heads * head_dim * p.element_size() * batch_size * tokens
    logits = batch_size * vocab * 4
    return int(1.25 * (kv + logits))


def peak_memory() -> dict:
    """Peak memory of this process so far: `peak_rss_bytes` (resource.getrusage), and with
    CUDA `peak_gpu_bytes` (torch.cuda.max_memory_allocated)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024)}
    if torch.cuda.is_available():
        out["peak_gpu_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


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


def _check_theta0(theta0: Mapping[str, torch.Tensor], names: list[str], params: dict) -> None:
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


class _Buffers:
    """Per device: one fp32 buffer for the sum of non-fp32 parameters and one into which
    streamed direction tensors are copied, each sized for the largest tensor and reused
    tensor to tensor."""

    def __init__(self, names: list[str], params: dict, active: list, host: list[bool]):
        self.need: dict[tuple[str, torch.device], int] = {}
        for n in names:
            p = params[n]
            if p.dtype != torch.float32:
                self._want("sum", p)
            if any(
                h or d.tensors[n].device != p.device
                for (d, _), h in zip(active, host)
                if n in d.tensors
            ):
                self._want("stage", p)
        self.buffers: dict[tuple[str, torch.device], torch.Tensor] = {}

    def _want(self, kind: str, p: torch.Tensor) -> None:
        key = (kind, p.device)
        self.need[key] = max(self.need.get(key, 0), p.numel())

    def __call__(self, kind: str, p: torch.Tensor) -> torch.Tensor:
        key = (kind, p.device)
        if key not in self.buffers:
            self.buffers[key] = torch.empty(self.need[key], dtype=torch.float32, device=p.device)
        return self.buffers[key][: p.numel()].view(p.shape)


def _set_tensor(p, theta0_n, terms, theta0_host: bool, buffer: _Buffers) -> torch.Tensor:
    """p ← θ0 + Σ c·t for one parameter; returns whether it came out finite (a 0-d bool
    tensor on p's device, so that the check does not synchronise tensor by tensor)."""
    if theta0_host:
        # The parameter itself is θ0's landing place: one same-dtype copy from host memory
        # (asynchronous when pinned), then any cast happens on the device.
        p.copy_(theta0_n, non_blocking=True)
        source = p
    else:
        source = theta0_n
    w = p if p.dtype == torch.float32 else buffer("sum", p)
    if w is not source:
        w.copy_(source)
    for t, c, h in terms:
        if h or t.device != p.device:
            # Same stream as the add: the buffer is not overwritten before use.
            t = buffer("stage", p).copy_(t, non_blocking=True)
        w.add_(t, alpha=c)
    if w is not p:
        p.copy_(w)
    # checked after the cast (bf16/fp16 can overflow where fp32 did not); aminmax propagates
    # NaN/inf and, unlike isfinite, allocates nothing
    return torch.isfinite(torch.stack(torch.aminmax(p))).all()


@contextmanager
def perturbed(
    model: nn.Module,
    coefficients: Mapping[Direction, float],
    theta0: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[nn.Module]:
    """Set covered parameters to θ0 + Σ cᵢ·dᵢ (fp32, cast to the parameter dtype) and
    restore θ0 exactly on exit, whatever ends the block (KeyboardInterrupt included).

    Pass `theta0` (a `snapshot` taken once per run) to skip cloning at every point. θ0 and
    direction tensors may sit on the model's device or elsewhere (`snapshot`/`hold` with
    `offload="cpu"`): those are streamed in one tensor at a time; the weights come out the
    same. A non-finite perturbed weight raises LandscapeError with the model left at θ0."""
    coefficients = {d: float(c) for d, c in coefficients.items()}
    names, params = _targets(model, coefficients)
    if theta0 is None:
        theta0 = snapshot(model, names)
    else:
        _check_theta0(theta0, names, params)
    active = [(d, c) for d, c in coefficients.items() if c != 0.0]
    host = [isinstance(d.tensors, HostTensors) for d, _ in active]
    theta0_host = isinstance(theta0, HostTensors)
    buffer = _Buffers(names, params, active, host)
    try:
        with torch.no_grad():
            finite = []
            for n in names:
                p = params[n]
                terms = [(d.tensors[n], c, h) for (d, c), h in zip(active, host) if n in d.tensors]
                if not terms or p.numel() == 0:
                    p.copy_(theta0[n], non_blocking=theta0_host)
                    continue
                if any(not abs(c) <= _FP32_MAX for _, c, _ in terms):  # add_ would refuse it
                    raise LandscapeError(
                        f"non-finite weights in {n!r} at coefficients ({_describe(coefficients)})"
                    )
                ok = _set_tensor(p, theta0[n], terms, theta0_host, buffer)
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
                params[n].copy_(theta0[n], non_blocking=theta0_host)
