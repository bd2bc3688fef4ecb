"""Directions made tensor by tensor from safetensors checkpoints, never holding a model.

A 70B direction is 280 GB in fp32; building it as `aligned` does needs both models and the
direction in memory at once. Here every direction is a *source*: a function from a parameter
name to its fp32 tensor, computed when asked (`delta_source`: after − before, read from the
two checkpoints; `random_source`; `file_source`: a saved direction). `streamed` turns the raw
sources of a run into its normalised directions, the second orthogonalised against the first,
with exactly the arithmetic of `Direction.orthogonalized` and `Direction.normalized` (per
tensor through those very methods; the global sums in the same order), so the tensors are
bitwise those of the in-memory path. Global quantities (norms, Gram–Schmidt coefficients)
take passes of their own over the sources; per-tensor modes (`layer`, `filter`, with their
tensor/row orthogonalisation) need none. `write_direction` writes a direction as a
safetensors file one tensor at a time, in the model's parameter names, and returns its
fingerprint. Memory stays within a few copies of the largest tensor throughout.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from landscape.directions.direction import (
    _META_KEY,
    _NAMES_KEY,
    GRANULARITIES,
    NORMS,
    ORTHO_FOR_NORM,
    Direction,
    _dot,
    _fp32,
    _seed_for,
)
from landscape.errors import LandscapeError
from landscape.io import replacing

Source = Callable[[str], torch.Tensor]
_TOL = 64 * torch.finfo(torch.float32).eps  # as Direction.orthogonalized


def safetensors_header(path: str | Path) -> dict:
    """name -> {dtype, shape, data_offsets} of one safetensors file, read from its header
    alone (the metadata entry left out)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def checkpoint_index(folder: str | Path) -> dict[str, Path]:
    """Every tensor name of a model folder's safetensors files -> the file that holds it."""
    where: dict[str, Path] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        for name in safetensors_header(f):
            where.setdefault(name, f)
    return where


def checkpoint_shapes(folder: str | Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a model folder's safetensors files (headers only)."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise LandscapeError(
            f"{folder} holds no .safetensors files: the vLLM workers load the model from them"
        )
    out: dict[str, tuple[int, ...]] = {}
    for f in files:
        for name, h in safetensors_header(f).items():
            out.setdefault(name, tuple(h["shape"]))
    return out


class Checkpoint:
    """The tensors of a model folder's safetensors files, read one at a time."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.shapes = checkpoint_shapes(self.folder)  # refuses a folder without safetensors
        self.index = checkpoint_index(self.folder)

    def get(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self.index:
            raise LandscapeError(f"{self.folder} holds no tensor {name!r}")
        with safe_open(str(self.index[name]), framework="pt", device="cpu") as f:
            t = f.get_tensor(name)
        return t if dtype is None else t.to(dtype)


def model_names(folder: str | Path, scope: str = "blocks") -> tuple[list[str], dict]:
    """The parameters `scope` covers in the model a folder's config describes, in the model's
    order (as `scope.select` gives them on the loaded model), and every parameter's shape;
    the model is built on the meta device, so nothing is allocated."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from landscape import scope as scope_mod

    config = AutoConfig.from_pretrained(folder)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    return scope_mod.select(model, scope), shapes


def delta_source(
    after: Checkpoint,
    before: Checkpoint,
    after_dtype: torch.dtype | None = None,
    before_dtype: torch.dtype | None = None,
) -> Source:
    """name -> fp32(after) − fp32(before), each first cast to its dtype (None: as stored), as
    `delta` computes it from models loaded in those dtypes."""

    def get(name: str) -> torch.Tensor:
        a, b = after.get(name, after_dtype), before.get(name, before_dtype)
        if a.shape != b.shape:
            raise LandscapeError(
                f"shape mismatch at {name!r}: {tuple(a.shape)} vs {tuple(b.shape)}"
            )
        return _fp32(a) - _fp32(b)

    return get


def random_source(shapes: Mapping[str, Sequence[int]], seed: int) -> Source:
    """name -> the tensor `random(reference, names, seed)` gives it."""

    def get(name: str) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(_seed_for(seed, name))
        return torch.randn(tuple(shapes[name]), generator=g, dtype=torch.float32)

    return get


def file_source(path: str | Path) -> tuple[Source, list[str], dict]:
    """A saved direction file as a source, with its names (in order) and its meta."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            md = f.metadata() or {}
            keys = list(f.keys())
    except Exception as e:  # safetensors raises several types for a corrupt file
        raise LandscapeError(f"cannot read direction file {path}: {e}") from None
    names = json.loads(md[_NAMES_KEY]) if _NAMES_KEY in md else keys

    def get(name: str) -> torch.Tensor:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return _fp32(f.get_tensor(name))

    return get, names, json.loads(md.get(_META_KEY, "{}"))


def _total(values) -> float:
    total = 0  # sum()'s own start and order, as the in-memory sums
    for v in values:
        total += float(v)
    return total


def norm(source: Source, names: Sequence[str]) -> float:
    """`Direction.norm()` of the source over `names`."""
    return math.sqrt(_total(_dot(t, t) for t in map(source, names)))


def cosine(a: Source, b: Source, names: Sequence[str]) -> float:
    """`Direction.cosine` of two sources: one pass for the dot product, one per norm."""
    dot = _total(_dot(a(n), b(n)) for n in names)
    den = norm(a, names) * norm(b, names)
    return dot / den if den > 0 else 0.0


def orthogonalized(d: Source, a: Source, names: Sequence[str], granularity: str) -> Source:
    """`Direction.orthogonalized(d, a, granularity)` as a source."""
    if granularity not in GRANULARITIES:
        raise LandscapeError(f"unknown granularity {granularity!r}")
    if granularity != "global":  # each tensor on its own: the method itself, per tensor
        return lambda n: (
            Direction({n: d(n)}).orthogonalized(Direction({n: a(n)}), granularity).tensors[n]
        )
    aa = _total(_dot(x, x) for x in map(a, names))
    before = norm(d, names)
    c1 = _total(_dot(d(n), a(n)) for n in names) / aa if aa > 0 else 0.0

    def once(n: str) -> torch.Tensor:
        return d(n).clone().sub_(a(n), alpha=c1)

    c2 = _total(_dot(once(n), a(n)) for n in names) / aa if aa > 0 else 0.0

    def twice(n: str) -> torch.Tensor:
        return once(n).sub_(a(n), alpha=c2)

    if norm(twice, names) <= _TOL * before:
        return lambda n: torch.zeros_like(d(n))
    return twice


def normalized(d: Source, names: Sequence[str], mode: str, reference: Source | None) -> Source:
    """`Direction.normalized(mode, reference)` as a source; `reference`: name -> the
    reference model's tensor (in its dtype)."""
    if mode not in NORMS:
        raise LandscapeError(f"unknown normalisation {mode!r}: use one of {', '.join(NORMS)}")
    if mode == "none":
        return d
    if mode == "unit":
        n = norm(d, names)
        c = 1.0 / n if n > 0 else 0.0
        return lambda k: d(k) * c
    if reference is None:
        raise LandscapeError(f"normalisation {mode!r} needs the reference model's weights")
    if mode == "model":
        n = norm(d, names)
        w = math.sqrt(_total(_dot(r, r) for r in map(reference, names)))
        c = w / n if n > 0 else 0.0
        return lambda k: d(k) * c
    return lambda k: Direction({k: d(k)}).normalized(mode, {k: reference(k)}).tensors[k]


def streamed(
    raws: Sequence[Source], names: Sequence[str], mode: str, reference: Source | None
) -> tuple[list[Source], float | None]:
    """A run's directions from their raw sources, as `landscape.grid.run.build_directions`
    makes them: the second orthogonalised against the first at ORTHO_FOR_NORM[mode], then
    each normalised. Returns them and the raw cosine of the two (None for one)."""
    raws = list(raws)
    cos = None
    if len(raws) == 2:
        cos = cosine(raws[0], raws[1], names)
        raws[1] = orthogonalized(raws[1], raws[0], names, ORTHO_FOR_NORM[mode])
    return [normalized(r, names, mode, reference) for r in raws], cos


def write_direction(
    path: str | Path,
    names: Sequence[str],
    shapes: Mapping[str, Sequence[int]],
    source: Source,
    meta: dict,
    on_tensor: Callable[[str], None] | None = None,
) -> str:
    """Write the source over `names` as the safetensors file `Direction.save` would write
    (fp32, the names' order and `meta` in its metadata), one tensor at a time; returns the
    direction's fingerprint (`Direction.fingerprint`). `on_tensor(name)` is called after
    each tensor is written."""
    meta = {"kind": "custom", "scope": None, "norm": "none", "seed": None, "sources": [], **meta}
    header, offset = {}, 0
    for n in names:
        size = math.prod(shapes[n]) * 4
        header[n] = {
            "dtype": "F32",
            "shape": list(shapes[n]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header["__metadata__"] = {
        _META_KEY: json.dumps(meta, default=str),
        _NAMES_KEY: json.dumps(list(names)),
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data start aligned, as safetensors writes it
    h = hashlib.sha256()
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for n in names:
            t = _fp32(source(n))
            if tuple(t.shape) != tuple(shapes[n]):
                raise LandscapeError(
                    f"direction tensor {n!r} has shape {tuple(t.shape)}, not {tuple(shapes[n])}"
                )
            data = t.reshape(-1).view(torch.uint8).numpy()
            h.update(f"{n}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(data.tobytes())
            f.write(data.data)
            del t, data
            if on_tensor is not None:
                on_tensor(n)
    return h.hexdigest()[:16]


def stream_delta(
    after: str | Path,
    before: str | Path,
    out: str | Path,
    scope: str = "blocks",
    norm_mode: str = "none",
    kind: str = "aligned",
    on_tensor: Callable[[str], None] | None = None,
) -> Path:
    """d = after − before over `scope`, streamed from the two folders' safetensors and
    written to `out`, optionally normalised against `after`'s weights: the same file as
    `aligned(before_model, after_model, names).normalized(norm_mode, after_model).save(out)`
    with both models in fp32, holding one tensor of each at a time."""
    a, b = Checkpoint(after), Checkpoint(before)
    names, shapes = model_names(after, scope)
    for n in names:
        for side, ck in (("after", a), ("before", b)):
            if n not in ck.index:
                raise LandscapeError(f"parameter {n!r} missing from the {side} model ({ck.folder})")
    raw = delta_source(a, b, torch.float32, torch.float32)
    d = normalized(raw, names, norm_mode, lambda n: a.get(n, torch.float32))
    meta = {"kind": kind, "scope": scope, "norm": norm_mode, "sources": [str(after), str(before)]}
    write_direction(out, names, shapes, d, meta, on_tensor)
    return Path(out)
