"""Directions streamed tensor by tensor from safetensors checkpoints: bitwise the in-memory
directions (every normalisation and orthogonalisation, fp32 and bf16 models), written as
files `Direction.load` reads, in memory bounded by the largest tensor, not the model."""

from __future__ import annotations

import weakref

import pytest
import torch
from helpers import make_tiny_model, pair_delta
from torch.overrides import TorchFunctionMode

from landscape import directions as D
from landscape import scope
from landscape.directions import stream
from landscape.directions.__main__ import main as directions_main
from landscape.models import load_model


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32)


def _equal(direction: D.Direction, source, names) -> bool:
    return list(direction.tensors) == list(names) and all(
        torch.equal(_bits(direction.tensors[n]), _bits(source(n))) for n in names
    )


@pytest.fixture
def pair(tiny_pair_dir):
    base, _ = load_model(tiny_pair_dir["base"], device="cpu")
    aligned, _ = load_model(tiny_pair_dir["aligned"], device="cpu")
    return tiny_pair_dir, base, aligned


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("norm", D.NORMS)
def test_streamed_directions_are_the_in_memory_ones(pair, norm, dtype):
    dirs, base, aligned = pair
    model = aligned.to(dtype)  # the model under test in the run's dtype, the base in fp32
    names = scope.select(model, "blocks")
    raw = [D.aligned(base, model, names), D.random(model, names, seed=3)]
    cos = raw[0].cosine(raw[1])
    raw[1] = raw[1].orthogonalized(raw[0], D.ORTHO_FOR_NORM[norm])
    want = [r.normalized(norm, model) for r in raw]

    a, b = stream.Checkpoint(dirs["aligned"]), stream.Checkpoint(dirs["base"])
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    sources = [stream.delta_source(a, b, dtype, torch.float32), stream.random_source(shapes, 3)]
    got, got_cos = stream.streamed(sources, names, norm, lambda n: a.get(n, dtype))
    assert got_cos == cos
    assert all(_equal(w, g, names) for w, g in zip(want, got))
    # Nontrivial: the orthogonalised second direction really moved, and is not zero.
    assert not _equal(raw[0].normalized(norm, model), got[1], names)
    assert any(bool(got[1](n).abs().sum() > 0) for n in names)


def test_a_saved_direction_file_is_a_source(pair, tmp_path):
    dirs, _, aligned = pair
    names = scope.select(aligned, "blocks")
    d = D.random(aligned, names, seed=5)
    source, have, meta = stream.file_source(d.save(tmp_path / "r.safetensors"))
    assert have == names and meta["kind"] == "random" and _equal(d, source, names)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_stream_command_writes_the_in_memory_file(pair, tmp_path, capsys, norm):
    dirs, base, aligned = pair
    out = tmp_path / f"aligned-{norm}.safetensors"
    argv = ["stream", "--base", str(dirs["base"]), "--aligned", str(dirs["aligned"])]
    assert directions_main([*argv, "--norm", norm, "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    names = scope.select(aligned, "blocks")
    want = D.aligned(base, aligned, names).normalized(norm, aligned)
    got = D.Direction.load(out)
    assert list(got.tensors) == names
    assert all(torch.equal(_bits(got.tensors[n]), _bits(want.tensors[n])) for n in names)
    assert got.fingerprint() == want.fingerprint()
    assert {k: got.meta[k] for k in ("kind", "scope", "norm")} == {
        "kind": "aligned",
        "scope": "blocks",
        "norm": norm,
    }
    # The pair differs by conftest's known delta, so the raw direction is that delta.
    if norm == "none":
        for n in names:
            assert torch.allclose(got.tensors[n], pair_delta(n, got.tensors[n].shape), atol=1e-6)


def test_write_direction_returns_the_files_fingerprint(pair, tmp_path):
    _, _, aligned = pair
    names = scope.select(aligned, "blocks")
    shapes = {n: tuple(p.shape) for n, p in aligned.named_parameters()}
    d = D.random(aligned, names, seed=2)
    fp = stream.write_direction(tmp_path / "d.safetensors", names, shapes, d.tensors.get, {})
    assert fp == d.fingerprint() == D.Direction.load(tmp_path / "d.safetensors").fingerprint()


class _LiveTensors(TorchFunctionMode):
    """Every tensor a torch call returns while the mode is on, held by weak reference:
    `bytes()` is what of them is still alive (each storage once)."""

    def __init__(self):
        super().__init__()
        self.refs: list[weakref.ref] = []

    def track(self, out):
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.refs.append(weakref.ref(t))
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.track(func(*args, **(kwargs or {})))

    def bytes(self) -> int:
        self.refs = [r for r in self.refs if r() is not None]
        with torch.overrides._pop_mode_temporarily():
            storages = {}
            for r in self.refs:
                t = r()
                if t is not None:
                    s = t.untyped_storage()
                    storages[s.data_ptr()] = s.nbytes()
        return sum(storages.values())


@pytest.mark.parametrize("norm", ["layer", "unit"])
def test_memory_stays_within_a_few_tensors(tiny_tokenizer, tmp_path, monkeypatch, norm):
    """Live tensor bytes, counted at every read of a checkpoint tensor and after every
    written one, stay within a few copies of the largest tensor: far below one direction."""
    for tag, seed in (("base", 0), ("aligned", 1)):
        make_tiny_model(tiny_tokenizer, seed=seed, layers=12).save_pretrained(tmp_path / tag)
    names, shapes = stream.model_names(tmp_path / "aligned")
    largest = max(4 * torch.Size(shapes[n]).numel() for n in names)
    direction = sum(4 * torch.Size(shapes[n]).numel() for n in names)
    live, peak = _LiveTensors(), [0]
    real = stream.Checkpoint.get

    def counting(self, name, dtype=None):
        t = live.track(real(self, name, dtype))  # safetensors makes it outside torch calls
        peak[0] = max(peak[0], live.bytes())
        return t

    def after_each(name):
        peak[0] = max(peak[0], live.bytes())

    monkeypatch.setattr(stream.Checkpoint, "get", counting)
    a, b = stream.Checkpoint(tmp_path / "aligned"), stream.Checkpoint(tmp_path / "base")
    with live:
        raws = [
            stream.delta_source(a, b, torch.float32, torch.float32),
            stream.random_source(shapes, 1),
        ]
        dirs, _ = stream.streamed(raws, names, norm, lambda n: a.get(n, torch.float32))
        stream.write_direction(tmp_path / "d.safetensors", names, shapes, dirs[1], {}, after_each)
    assert peak[0] >= largest  # the counter saw whole tensors being read
    assert peak[0] <= 6 * largest, (peak[0], largest)
    assert peak[0] < direction / 4  # 12 layers: the whole direction is far larger
    # A check that could fail: holding the direction in memory is seen as such.
    with live:
        held = [dirs[1](n) for n in names]
        assert live.bytes() >= direction
    del held
