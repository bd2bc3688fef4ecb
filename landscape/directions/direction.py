"""The Direction: named fp32 tensors with their algebra, normalisation, orthogonalisation,
checks and files.

A `Direction` maps parameter names to CPU fp32 tensors (in the model's order) and carries
a `meta` dict (kind, scope, norm, seed, sources, ...).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from landscape import scope as scope_mod
from landscape.errors import LandscapeError
from landscape.io import replacing

NORMS = ("none", "unit", "model", "layer", "filter")
GRANULARITIES = ("global", "tensor", "row")
# Orthogonalising at the granularity the normalisation rescales at keeps a plane exactly
# orthogonal after normalising (a per-tensor rescale preserves per-tensor orthogonality).
ORTHO_FOR_NORM = {
    "none": "global",
    "unit": "global",
    "model": "global",
    "layer": "tensor",
    "filter": "row",
}
_META_KEY = "landscape.meta"
_NAMES_KEY = "landscape.names"

Source = nn.Module | Mapping[str, torch.Tensor]
Names = Sequence[str] | str | None


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32).contiguous()


def _params(x: Source) -> dict[str, torch.Tensor]:
    """name -> tensor for a model (tied aliases included) or a state dict / Direction."""
    if isinstance(x, Direction):
        return x.tensors
    if isinstance(x, nn.Module):
        return dict(x.named_parameters(remove_duplicate=False))
    if isinstance(x, Mapping):
        return dict(x)
    raise LandscapeError(f"expected a model or a name->tensor dict, got {type(x).__name__}")


def _source(x: object) -> str:
    if isinstance(x, str | Path):
        return str(x)
    if isinstance(x, nn.Module):
        path = getattr(getattr(x, "config", None), "_name_or_path", "") or getattr(
            x, "name_or_path", ""
        )
        return str(path) or type(x).__name__
    return type(x).__name__


def _resolve(names: Names, reference: Source) -> tuple[list[str], str | None]:
    """A list of names, or a scope string resolved against `reference` (default `blocks`)."""
    if names is None or isinstance(names, str):
        sc = names or "blocks"
        return scope_mod.select(reference, sc), sc
    return list(names), None


def _rows(t: torch.Tensor) -> torch.Tensor:
    """A (rows, -1) view: output rows of a matrix; a 0/1-D tensor is a single filter."""
    return t.reshape(t.shape[0], -1) if t.ndim >= 2 else t.reshape(1, -1)


def _dot(x: torch.Tensor, y: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·y (over `dim`, or all) accumulated in float64: fp32 sums over millions of
    entries lose about four digits. Half-precision inputs (a bf16 model's weights) are
    multiplied in fp32: their products rounded to 8 bits would skew norms by ~1e-3."""
    x, y = x.detach().to("cpu"), y.detach().to("cpu")
    if x.dtype in (torch.bfloat16, torch.float16):
        x = x.float()
    if y.dtype in (torch.bfloat16, torch.float16):
        y = y.float()
    return torch.sum(x * y, dim=dim, dtype=torch.float64)


def _norm(t: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return _dot(t, t, dim).sqrt()


def _seed_for(seed: int, name: str) -> int:
    # Stable across processes (Python's hash() is salted) and independent of tensor order.
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little") >> 1


@dataclass(eq=False, repr=False)
class Direction:
    """Named fp32 CPU tensors plus `meta`. Hashable by identity (usable as a dict key).

    Tensors are converted, not copied, when already fp32/CPU/contiguous, and derived
    directions may share them: treat them as read-only."""

    tensors: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tensors = {k: _fp32(v) for k, v in self.tensors.items()}
        self.meta = {
            "kind": "custom",
            "scope": None,
            "norm": "none",
            "seed": None,
            "sources": [],
            **self.meta,
        }

    def __repr__(self) -> str:
        numel = sum(t.numel() for t in self.tensors.values())
        return f"Direction(kind={self.meta.get('kind')!r}, norm={self.meta.get('norm')!r}, tensors={len(self.tensors)}, numel={numel})"

    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    # --- algebra -----------------------------------------------------------------------
    def _same_names(self, other: Direction) -> None:
        if not isinstance(other, Direction):
            raise LandscapeError(f"expected a Direction, got {type(other).__name__}")
        for n in self.tensors:
            if n not in other.tensors:
                raise LandscapeError(
                    f"directions cover different parameters: {n!r} is only in the first"
                )
            if self.tensors[n].shape != other.tensors[n].shape:
                raise LandscapeError(
                    f"directions differ in shape at {n!r}: {tuple(self.tensors[n].shape)} vs {tuple(other.tensors[n].shape)}"
                )
        for n in other.tensors:
            if n not in self.tensors:
                raise LandscapeError(
                    f"directions cover different parameters: {n!r} is only in the second"
                )

    def _derive(self, tensors: dict[str, torch.Tensor], **meta) -> Direction:
        return Direction(
            tensors, {**self.meta, "sources": list(self.meta.get("sources", [])), **meta}
        )

    def norm(self) -> float:
        """Global L2 norm over all tensors."""
        return math.sqrt(sum(float(_dot(t, t)) for t in self.tensors.values()))

    def dot(self, other: Direction) -> float:
        self._same_names(other)
        return sum(float(_dot(a, other.tensors[n])) for n, a in self.tensors.items())

    def cosine(self, other: Direction) -> float:
        """Global cosine over the flattened scope (0.0 if either direction is zero)."""
        dot = self.dot(other)  # checks the names first
        den = self.norm() * other.norm()
        return dot / den if den > 0 else 0.0

    def cosine_per_tensor(self, other: Direction) -> dict[str, float]:
        """Cosine of each tensor pair; 0.0 where either tensor is all zero."""
        self._same_names(other)
        out = {}
        for n, a in self.tensors.items():
            b = other.tensors[n]
            den = float(_norm(a) * _norm(b))
            out[n] = float(_dot(a, b)) / den if den > 0 else 0.0
        return out

    def scaled(self, c: float) -> Direction:
        return self._derive(
            {n: t * c for n, t in self.tensors.items()}, scale=self.meta.get("scale", 1.0) * c
        )

    def __add__(self, other: Direction) -> Direction:
        self._same_names(other)
        sources = list(self.meta.get("sources", [])) + list(other.meta.get("sources", []))
        return Direction(
            {n: t + other.tensors[n] for n, t in self.tensors.items()},
            {"kind": "custom", "scope": self.meta.get("scope"), "sources": sources},
        )

    def __neg__(self) -> Direction:
        return self.scaled(-1.0)

    def __sub__(self, other: Direction) -> Direction:
        return self + (-other)

    # --- normalise / orthogonalise -----------------------------------------------------
    def _reference(self, reference: Source | None, mode: str) -> dict[str, torch.Tensor]:
        if reference is None:
            raise LandscapeError(
                f"normalisation {mode!r} needs the reference model whose weights set the scale"
            )
        ref = _params(reference)
        for n, t in self.tensors.items():
            if n not in ref:
                raise LandscapeError(f"reference has no parameter {n!r}")
            if ref[n].shape != t.shape:
                raise LandscapeError(
                    f"reference shape {tuple(ref[n].shape)} != direction shape {tuple(t.shape)} at {n!r}"
                )
        return ref

    def normalized(self, mode: str = "layer", reference: Source | None = None) -> Direction:
        """Rescale: none | unit (‖d‖=1) | model (‖d‖=‖w‖ over the scope) | layer (per tensor
        ‖d_t‖=‖w_t‖) | filter (per output row, Li et al. 2018). Zero tensors/rows stay zero."""
        if mode not in NORMS:
            raise LandscapeError(f"unknown normalisation {mode!r}: use one of {', '.join(NORMS)}")
        if mode == "none":
            return self._derive(dict(self.tensors), norm="none")
        if mode == "unit":
            n = self.norm()
            c = 1.0 / n if n > 0 else 0.0
            return self._derive({k: t * c for k, t in self.tensors.items()}, norm="unit")
        ref = self._reference(reference, mode)
        if mode == "model":
            n = self.norm()
            w = math.sqrt(sum(float(_dot(ref[k], ref[k])) for k in self.tensors))
            c = w / n if n > 0 else 0.0
            return self._derive({k: t * c for k, t in self.tensors.items()}, norm="model")
        out = {}
        for k, t in self.tensors.items():
            w = ref[k]
            if mode == "layer":
                dn, wn = _norm(t), _norm(w)
                out[k] = t * float(wn / dn) if dn > 0 else torch.zeros_like(t)
            else:  # filter
                dn, wn = _norm(_rows(t), 1), _norm(_rows(w), 1)
                c = torch.where(dn > 0, wn / dn.clamp_min(1e-300), torch.zeros_like(dn))
                out[k] = (_rows(t) * c.float()[:, None]).reshape(t.shape)
        return self._derive(out, norm=mode)

    def orthogonalized(self, against: Direction, granularity: str = "global") -> Direction:
        """Gram–Schmidt against `against`, globally, per tensor or per output row.

        Use ORTHO_FOR_NORM[mode] before `normalized(mode)` so the plane stays orthogonal."""
        if granularity not in GRANULARITIES:
            raise LandscapeError(
                f"unknown granularity {granularity!r}: use one of {', '.join(GRANULARITIES)}"
            )
        self._same_names(against)
        cos_before = self.cosine(against)
        a = against.tensors
        d = {n: t.clone() for n, t in self.tensors.items()}

        def units(n: str) -> tuple[torch.Tensor, torch.Tensor]:  # (units, -1) views
            if granularity == "row":
                return _rows(d[n]), _rows(a[n])
            return d[n].reshape(1, -1), a[n].reshape(1, -1)

        before = self.norm() if granularity == "global" else {n: _norm(units(n)[0], 1) for n in d}
        # A second pass removes what fp32 rounding left of the projection. Tensor by tensor,
        # so memory stays at one fp32 copy of the direction.
        for _ in range(2):
            if granularity == "global":
                aa = sum(float(_dot(x, x)) for x in a.values())
                c = sum(float(_dot(d[n], a[n])) for n in d) / aa if aa > 0 else 0.0
                for n in d:
                    d[n].sub_(a[n], alpha=c)
                continue
            for n in d:
                dr, ar = units(n)
                aa = _dot(ar, ar, 1)
                c = torch.where(aa > 0, _dot(dr, ar, 1) / aa.clamp_min(1e-300), 0.0)
                dr.sub_(c.float()[:, None] * ar)
        # What is left of a (near-)parallel unit is rounding noise pointing anywhere, which a
        # later rescaling would blow up: call it zero, as exact arithmetic would.
        tol = 64 * torch.finfo(torch.float32).eps
        if granularity == "global":
            if Direction(d).norm() <= tol * before:
                d = {n: torch.zeros_like(t) for n, t in d.items()}
        else:
            for n in d:
                dr = units(n)[0]
                dr[_norm(dr, 1) <= tol * before[n]] = 0.0
        return self._derive(
            d,
            orthogonalized_against=against.meta.get("kind", "custom"),
            ortho_granularity=granularity,
            cosine_before=cos_before,
        )

    # --- checks and files --------------------------------------------------------------
    def fingerprint(self) -> str:
        """16 hex chars of sha256 over names, shapes and bytes: what a resume compares."""
        from landscape.models import tensors_fingerprint

        return tensors_fingerprint(self.tensors.items())

    def check(self, model: Source) -> None:
        """Raise LandscapeError unless every name exists in `model` with the same shape."""
        params = _params(model)
        for n, t in self.tensors.items():
            if n not in params:
                raise LandscapeError(f"direction parameter {n!r} is not in the model")
            if tuple(params[n].shape) != tuple(t.shape):
                raise LandscapeError(
                    f"direction shape {tuple(t.shape)} != model shape {tuple(params[n].shape)} at {n!r}"
                )

    def save(self, path: str | Path) -> Path:
        """One .safetensors file; meta (JSON) and the name order go in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        metadata = {
            _META_KEY: json.dumps(self.meta, default=str),
            _NAMES_KEY: json.dumps(self.names),
        }
        with replacing(path) as tmp:  # a killed run never leaves half a file
            save_file(self.tensors, str(tmp), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Direction:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise LandscapeError(f"direction file not found: {path}")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                md = f.metadata() or {}
                keys = list(f.keys())
                names = json.loads(md[_NAMES_KEY]) if _NAMES_KEY in md else keys
                if sorted(names) != sorted(keys):
                    raise LandscapeError(
                        f"direction file {path} is inconsistent: names do not match tensors"
                    )
                tensors = {n: f.get_tensor(n) for n in names}
                meta = json.loads(md.get(_META_KEY, "{}"))
        except LandscapeError:
            raise
        except Exception as e:  # safetensors raises several types for a corrupt file
            raise LandscapeError(f"cannot read direction file {path}: {e}") from None
        return cls(tensors, meta)
