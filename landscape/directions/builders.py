"""Directions from models: a difference of two (`delta`, `aligned`), a seeded Gaussian
(`random`), or a fine-tuned folder minus its reference (`from_checkpoint`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from landscape.directions.direction import (
    Direction,
    Names,
    Source,
    _fp32,
    _params,
    _resolve,
    _seed_for,
    _source,
)
from landscape.errors import LandscapeError

log = logging.getLogger(__name__)


def delta(
    after: Source,
    before: Source,
    names: Names = None,
    kind: str = "custom",
    sources: Sequence[str] | None = None,
) -> Direction:
    """after − before in fp32 over `names` (a list, or a scope string; default `blocks`)."""
    names, sc = _resolve(names, before)
    a, b = _params(after), _params(before)
    out = {}
    for n in names:
        for side, p in (("after", a), ("before", b)):
            if n not in p:
                raise LandscapeError(f"parameter {n!r} missing from the {side} model")
        if a[n].shape != b[n].shape:
            raise LandscapeError(
                f"shape mismatch at {n!r}: {tuple(a[n].shape)} vs {tuple(b[n].shape)}"
            )
        out[n] = _fp32(a[n]) - _fp32(b[n])
    srcs = list(sources) if sources is not None else [_source(after), _source(before)]
    return Direction(out, {"kind": kind, "scope": sc, "norm": "none", "sources": srcs})


def aligned(base_model: Source, aligned_model: Source, names: Names = None) -> Direction:
    """θ_aligned − θ_base."""
    return delta(aligned_model, base_model, names, kind="aligned")


def random(reference: Source, names: Names = None, seed: int = 0) -> Direction:
    """Gaussian direction; each tensor from a CPU generator seeded by (seed, name), so the
    same seed gives identical tensors whatever the model's device or dtype."""
    names, sc = _resolve(names, reference)
    ref = _params(reference)
    out = {}
    for n in names:
        if n not in ref:
            raise LandscapeError(f"reference has no parameter {n!r}")
        g = torch.Generator(device="cpu").manual_seed(_seed_for(seed, n))
        out[n] = torch.randn(tuple(ref[n].shape), generator=g, dtype=torch.float32)
    return Direction(
        out,
        {
            "kind": "random",
            "scope": sc,
            "norm": "none",
            "seed": seed,
            "sources": [_source(reference)],
        },
    )


def _read_folder(path: Path, names: list[str]) -> dict[str, torch.Tensor] | None:
    """The named tensors from a folder's safetensors files, or None if some are not there
    under those names (tied weights, renamed checkpoints)."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    where: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt", device="cpu") as h:
            where.update({k: f for k in h.keys()})
    if any(n not in where for n in names):
        return None
    out = {}
    for f in {where[n] for n in names}:
        with safe_open(str(f), framework="pt", device="cpu") as h:
            out.update({n: h.get_tensor(n) for n in names if where[n] == f})
    return out


def from_checkpoint(
    finetuned: str | Path | Source,
    reference_model: Source,
    names: Names = None,
    kind: str = "custom",
) -> Direction:
    """A full fine-tuned model (HF folder or model) minus the reference, over `names`."""
    if not isinstance(finetuned, str | Path):
        return delta(finetuned, reference_model, names, kind=kind)
    path = Path(finetuned)
    if not path.is_dir():
        raise LandscapeError(f"checkpoint folder not found: {path}")
    names, sc = _resolve(names, reference_model)
    state = _read_folder(path, names)
    if state is None:  # fall back on transformers, which knows renames and tied weights
        from transformers import AutoModelForCausalLM

        log.info("loading %s with transformers (tensor names differ from the reference)", path)
        try:
            state = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch.float32, device_map="cpu"
            ).state_dict()
        except Exception as e:
            raise LandscapeError(f"cannot load checkpoint {path}: {e}") from None
    d = delta(
        state, reference_model, names, kind=kind, sources=[str(path), _source(reference_model)]
    )
    d.meta["scope"] = sc
    return d
