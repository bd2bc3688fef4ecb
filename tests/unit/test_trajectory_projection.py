"""The trajectory maths: an update a·d̂₁ + b·d̂₂ + r (r ⟂ the plane) projects to (a, b) with
off-plane share ‖r‖/‖ΔW‖ under every normalisation the grid offers, read from a LoRA
snapshot (B·A·scaling) or a full one; the grid's ASR interpolated exactly at its nodes,
bilinear functions reproduced, nothing extrapolated; Pearson's r where it is defined."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from analysis.trajectory.interp import INSIDE, MISSING, OUTSIDE, Surface
from analysis.trajectory.plane import project
from analysis.trajectory.runs import FineTuneRun
from analysis.trajectory.table import pearson
from landscape.directions import NORMS, ORTHO_FOR_NORM, Direction

IN = 6  # every weight's input width: room for the plane's two row vectors, r's and a spare
SHAPES = {
    "model.layers.0.self_attn.q_proj.weight": (8, IN),
    "model.layers.0.self_attn.v_proj.weight": (4, IN),
    "model.layers.1.self_attn.q_proj.weight": (8, IN),
}


def _case(seed: int, norm: str, a: float, b: float, rho: float):
    """(reference weights, the grid's axes d̂₁ d̂₂ as the grid makes them, ΔW in float64,
    ‖r‖/‖ΔW‖, each tensor's orthonormal row basis). The raw directions' rows lie in the span
    of two basis vectors and r's rows along a third, so r ⟂ the plane whatever the
    normalisation and orthogonalisation do within each tensor's rows."""
    g = torch.Generator().manual_seed(seed)
    ref, raw1, raw2, rs, bases = {}, {}, {}, {}, {}
    for n, (out, inp) in SHAPES.items():
        q, _ = torch.linalg.qr(torch.randn(inp, inp, generator=g, dtype=torch.float64))
        bases[n] = q.T  # rows: an orthonormal basis of the input space
        ref[n] = torch.randn(out, inp, generator=g)
        plane = q[:, :2].T
        raw1[n] = (torch.randn(out, 2, generator=g, dtype=torch.float64) @ plane).float()
        raw2[n] = (torch.randn(out, 2, generator=g, dtype=torch.float64) @ plane).float()
        rs[n] = torch.randn(out, 1, generator=g, dtype=torch.float64) @ q[:, 2:3].T
    d1 = Direction(raw1, {"kind": "aligned"})
    d2 = Direction(raw2, {"kind": "harmful"}).orthogonalized(d1, ORTHO_FOR_NORM[norm])
    axes = [d1.normalized(norm, ref), d2.normalized(norm, ref)]
    r_norm = math.sqrt(sum(float((t * t).sum()) for t in rs.values()))
    scale = rho * axes[0].norm() / r_norm
    delta = {
        n: a * axes[0].tensors[n].double() + b * axes[1].tensors[n].double() + scale * rs[n]
        for n in SHAPES
    }
    total = math.sqrt(sum(float((t * t).sum()) for t in delta.values()))
    return ref, axes, delta, rho * axes[0].norm() / total if total > 0 else None, bases


def _lora_snapshot(folder: Path, delta: dict, bases: dict, alpha: int = 8, r: int = 4) -> dict:
    """ΔW written as a peft adapter: A the first r basis rows (ΔW's rows lie in the span of
    the first three), B = ΔW Aᵀ / s, so that s·B·A = ΔW."""
    s = alpha / r
    tensors = {}
    for n, dw in delta.items():
        A = bases[n][:r]
        module = "base_model.model." + n.removesuffix(".weight")
        tensors[f"{module}.lora_A.weight"] = A.float().contiguous()
        tensors[f"{module}.lora_B.weight"] = (dw @ A.T / s).float().contiguous()
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "target_modules": ["q_proj", "v_proj"],
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return {"step": 1, "path": folder.name, "format": "lora"}


def _full_snapshot(path: Path, delta: dict) -> dict:
    save_file({n: t.float().contiguous() for n, t in delta.items()}, str(path))
    return {"step": 1, "path": path.name, "format": "full"}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    norm=st.sampled_from(NORMS),
    a=st.floats(-2, 2),
    b=st.floats(-2, 2),
    rho=st.floats(0, 2),
    lora=st.booleans(),
)
def test_an_update_projects_to_its_coordinates_and_off_plane_share(seed, norm, a, b, rho, lora):
    if abs(a) + abs(b) + rho < 0.05:  # a (near) zero update has no share to recover
        return
    ref, axes, delta, share, bases = _case(seed, norm, a, b, rho)
    with tempfile.TemporaryDirectory() as tmp:
        snaps = Path(tmp) / "snapshots"
        snaps.mkdir()
        if lora:
            record = _lora_snapshot(snaps / "step-000001", delta, bases)
        else:
            record = _full_snapshot(snaps / "step-000001.safetensors", delta)
        run = FineTuneRun(Path(tmp), {}, "sft", [record], {}, {})
        read = run.delta(record, ref)
    assert set(read) == set(SHAPES)
    p = project(read, axes)
    assert p.coords == pytest.approx([a, b], abs=1e-6)
    assert p.off_share == pytest.approx(share, abs=1e-6)
    assert 0 <= p.off_share <= 1 + 1e-9


def test_weights_outside_the_axes_count_as_off_the_plane():
    ref, axes, delta, _, _ = _case(0, "layer", 1.0, 0.0, 0.0)
    extra = {**delta, "model.layers.0.mlp.up_proj.weight": torch.ones(3, 4, dtype=torch.float64)}
    norm_in = math.sqrt(sum(float((t * t).sum()) for t in delta.values()))
    p = project(extra, axes)
    assert p.coords == pytest.approx([1.0, 0.0], abs=1e-6)
    assert p.off_share == pytest.approx(math.sqrt(12) / math.sqrt(norm_in**2 + 12), abs=1e-6)


def test_a_zero_update_has_no_off_plane_share():
    _, axes, delta, _, _ = _case(1, "unit", 0.0, 0.0, 0.0)
    p = project({n: torch.zeros_like(t) for n, t in delta.items()}, axes)
    assert p.coords == [0.0, 0.0] and p.norm == 0.0 and p.off_share is None


def _points(xs, ys, f):
    return [{"coords": [x, y], "asr": f(x, y)} for x in xs for y in ys]


@settings(max_examples=60, deadline=None)
@given(
    xs=st.lists(st.floats(-1, 1), min_size=2, max_size=6, unique=True),
    ys=st.lists(st.floats(-1, 1), min_size=2, max_size=6, unique=True),
    c=st.lists(st.floats(-1, 1), min_size=4, max_size=4),
    t=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_bilinear_is_exact_at_nodes_and_reproduces_bilinear_functions(xs, ys, c, t):
    xs, ys = sorted(round(x, 6) for x in xs), sorted(round(y, 6) for y in ys)
    if min(np.diff(xs)) < 1e-3 or min(np.diff(ys)) < 1e-3:
        return

    def f(x, y):
        return c[0] + c[1] * x + c[2] * y + c[3] * x * y

    s = Surface(_points(xs, ys, f))
    for x in xs:
        for y in ys:
            assert s.predict([x, y]) == (f(x, y), INSIDE)  # the node's value, exactly
    x = xs[0] + t[0] * (xs[-1] - xs[0])
    y = ys[0] + t[1] * (ys[-1] - ys[0])
    got, where = s.predict([x, y])
    assert where == INSIDE and got == pytest.approx(f(x, y), abs=1e-9)
    for outside in ([xs[0] - 0.01, y], [x, ys[-1] + 0.01], [xs[-1] + 1, ys[0] - 1]):
        assert s.predict(outside) == (None, OUTSIDE)


def test_linear_on_a_line_and_missing_corners_are_marked():
    line = Surface([{"coords": [x], "asr": a} for x, a in ((-0.5, 0.2), (0.0, 0.0), (0.5, 1.0))])
    assert line.predict([0.25]) == (0.5, INSIDE)
    assert line.predict([-0.5]) == (0.2, INSIDE)
    assert line.predict([0.6]) == (None, OUTSIDE)
    pts = _points([0.0, 1.0], [0.0, 1.0], lambda x, y: x + y)
    plane = Surface([p for p in pts if p["coords"] != [1.0, 1.0]])
    assert plane.predict([0.5, 0.5]) == (None, MISSING)
    assert plane.predict([0.5, 0.0]) == (0.5, INSIDE)  # on an edge whose two nodes exist
    assert plane.predict([0.0, 0.0]) == (0.0, INSIDE)


def test_pearson_is_none_where_undefined():
    assert pearson([0.1], [0.2]) is None
    assert pearson([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None
    assert pearson([0.0, 0.5, 1.0], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    assert pearson([0.0, 0.5, 1.0], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)
