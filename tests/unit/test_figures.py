"""Figures from hand-made run folders: every command writes real files, bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_rgba
from matplotlib.contour import ContourSet
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from analysis import figures as F
from landscape.errors import LandscapeError
from landscape.metrics import wilson

PNG = b"\x89PNG\r\n\x1a\n"
ANSWER = "Sure, here is the plan for point"
HOSTILE = "<script>alert(1)</script> & more"


def _write_run(
    folder: Path, dirs: list[str], axes: list[list[float]], *, gens: bool = True
) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"dirs": dirs, "norm": "layer", "judge": "keyword"}, sort_keys=True)
    )
    n = 8
    points, generations = [], []
    keys = [(i,) for i in range(len(axes[0]))]
    if len(axes) == 2:
        keys = [(i, j) for i in range(len(axes[0])) for j in range(len(axes[1]))]
    for key in keys:
        coords = [axes[d][k] for d, k in enumerate(key)]
        k = min(n, round(n * min(1.0, sum(abs(c) for c in coords))))
        lo, hi = wilson(k, n)
        points.append(
            {"key": list(key), "coords": coords, "n": n, "n_unsafe": k, "asr": k / n,
             "lo": lo, "hi": hi, "judges": {"keyword": k / n}}
        )  # fmt: skip
        for s, answer in enumerate([f"{ANSWER} {list(key)}", HOSTILE, "I cannot help."]):
            generations.append(
                {"key": list(key), "prompt": f"harmful request {s}", "sample": 0,
                 "answer": answer, "unsafe": {"keyword": s < 2}}
            )  # fmt: skip
    (folder / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    if gens:
        (folder / "generations.jsonl").write_text(
            "".join(json.dumps(g) + "\n" for g in generations)
        )
    (folder / "summary.json").write_text(
        json.dumps({"dirs": dirs, "norm": "layer", "judge": "keyword", "tau": 0.3, "epl": {}})
    )
    return folder


@pytest.fixture
def run1d(tmp_path):
    return _write_run(tmp_path / "one", ["harm"], [[-1.0, -0.5, 0.0, 0.5, 1.0]])


@pytest.fixture
def run2d(tmp_path):
    return _write_run(tmp_path / "two", ["aligned", "harm"], [[-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5]])


def _write_sweep(folder: Path, runs: list[dict]) -> Path:
    for r in runs:
        sub = folder / r["name"]
        sub.mkdir(parents=True)
        cfg = {"method": r["method"], "lam": r["lam"], "lr": r["lr"], "p": 0.1,
               "variant": "flat", "task": "toy:sst2"}  # fmt: skip
        (sub / "config.json").write_text(json.dumps(cfg))
        res = {"hs": r["hs"], "fa": r["fa"], "n_hs": 95, "n_fa": 100, **cfg}
        (sub / "result.json").write_text(json.dumps(res))
    return folder


@pytest.fixture
def lam_sweep(tmp_path):
    return _write_sweep(
        tmp_path / "sweep-lambda",
        [{"name": f"lam{v:g}", "method": "asft", "lam": v, "lr": 1e-3, "hs": hs, "fa": 0.8}
         for v, hs in [(0.0, 1.0), (0.1, 0.6), (1.0, 0.05), (10.0, 0.0)]],
    )  # fmt: skip


@pytest.fixture
def lr_sweep(tmp_path):
    return _write_sweep(
        tmp_path / "sweep-lr",
        [{"name": f"{m}-{lr:g}", "method": m, "lam": float(m == "asft"), "lr": lr, "hs": hs,
          "fa": 0.7}
         for m, hs in [("sft", 1.0), ("asft", 0.0)] for lr in (3e-4, 3e-3)],
    )  # fmt: skip


def _is_png(p: Path) -> bool:
    return p.suffix == ".png" and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG


def _is_pdf(p: Path) -> bool:
    return p.suffix == ".pdf" and p.stat().st_size > 1000 and p.read_bytes()[:4] == b"%PDF"


def _check_png_pdf(paths: list[Path]) -> None:
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    for p in paths:
        assert _is_png(p) or _is_pdf(p), p


def _texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def _contours(ax) -> tuple[list[ContourSet], list[ContourSet]]:
    """(filled, line) contour sets drawn on `ax`."""
    sets = [c for c in ax.collections if isinstance(c, ContourSet)]
    return [c for c in sets if c.filled], [c for c in sets if not c.filled]


def _levels(sets: list[ContourSet]) -> list[list[float]]:
    return [[round(float(v), 6) for v in c.levels] for c in sets]


def _colour(c) -> tuple:
    return tuple(np.round(np.asarray(c.get_edgecolor())[0], 6))


TAU_RGBA = tuple(np.round(to_rgba(F.TAU_COLOUR), 6))


def test_curves_draw_every_line_with_its_band(run1d, run2d, tmp_path, monkeypatch):
    fig = F.draw_curves([run1d, run2d])
    (ax,) = fig.axes
    # one line per 1-D run, the two lines through the origin of a 2-D run, then τ
    assert _texts(ax.get_legend()) == ["harm", "aligned", "harm ⊥ aligned", "τ = 0.30"]
    series = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    # run1d: ASR = |α| at n = 8; run2d's α-line (β = 0): |α| over {-0.5, 0, 0.5}
    assert list(series["harm"].get_xdata()) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert list(series["harm"].get_ydata()) == [1.0, 0.5, 0.0, 0.5, 1.0]
    assert list(series["aligned"].get_ydata()) == [0.5, 0.0, 0.5]
    assert list(series["τ = 0.30"].get_ydata()) == [0.3, 0.3]
    assert len({ln.get_color() for name, ln in series.items() if name[0] != "τ"}) == 3
    # one Wilson band per line, spanning that line's lo..hi
    assert len(ax.collections) == 3
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    # from 0 (the origin's lower end, 0 of 8) to 1 (α = ±1's upper end, 8 of 8), through the
    # interval of α = ±0.5 (4 of 8)
    assert min(ys) == pytest.approx(0.0) and max(ys) == pytest.approx(1.0)
    assert all(np.isclose(ys, end).any() for end in wilson(4, 8))
    assert ax.get_xlabel() == "coefficient α along each direction (layer norm)"
    assert ax.get_ylabel() == "attack success rate (keyword judge)"
    assert ax.get_ylim() == pytest.approx((-0.02, 1.02))
    # and the files: one run names them after the run, several `curves`
    _check_png_pdf(paths := F.plot_curves(run1d, tmp_path / "a"))
    assert {p.name for p in paths} == {"one-curve.png", "one-curve.pdf"}
    paths = F.plot_curves([run1d, run2d], tmp_path / "b")
    _check_png_pdf(paths)
    assert {p.name for p in paths} == {"curves.png", "curves.pdf"}
    # drawn again from the same runs a day later, the same bytes (no creation date in the PDF)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(time.time()) + 86400))
    again = F.plot_curves([run1d, run2d], tmp_path / "c")
    assert sorted(p.read_bytes() for p in again) == sorted(p.read_bytes() for p in paths)


def test_contour_draws_the_basin_edge_at_tau(run2d, tmp_path):
    fig = F.draw_contour(run2d)
    ax, cbar_ax = fig.axes
    filled, lines = _contours(ax)
    assert _levels(filled) == [[round(v / 10, 6) for v in range(11)]]
    # the 0.1..0.9 guide lines, then the basin edge alone at τ = 0.3, in vermillion
    assert _levels(lines)[-1] == [0.3] and _colour(lines[-1]) == TAU_RGBA
    cb = filled[0].colorbar
    assert filled[0].get_clim() == (0.0, 1.0) and cb.ax is cbar_ax
    assert cbar_ax.get_ylim() == (0.0, 1.0)
    assert cbar_ax.get_ylabel() == "attack success rate (keyword judge)"
    assert ax.get_xlabel() == "α along aligned (layer norm)"
    assert ax.get_ylabel() == "β along harm (layer norm, ⊥ first)"
    assert ax.get_title() == "Safety landscape — basin edge: ASR = τ = 0.30"
    assert _texts(ax.get_legend()) == ["ASR = τ = 0.30", "aligned model (origin)"]
    grid_points = ax.get_lines()[0]
    assert len(grid_points.get_xdata()) == 9  # every evaluated point of the 3×3 grid
    _check_png_pdf(F.plot_contour(run2d, tmp_path / "out"))


def test_contour_without_an_edge_says_so(run2d):
    summary = json.loads((run2d / "summary.json").read_text())
    (run2d / "summary.json").write_text(json.dumps({**summary, "tau": 1.0}))
    ax = F.draw_contour(run2d).axes[0]
    assert [0.3] not in _levels(_contours(ax)[1]) and [1.0] not in _levels(_contours(ax)[1])
    assert ax.get_title().endswith("τ = 1.00: the whole plane is inside the basin")
    assert _texts(ax.get_legend()) == ["aligned model (origin)"]


def test_surface_draws_the_plane_in_3d(run2d, tmp_path):
    fig = F.draw_surface(run2d)
    ax, cbar_ax = fig.axes
    assert ax.name == "3d"
    (surface,) = [c for c in ax.collections if isinstance(c, Poly3DCollection)]
    assert surface.get_clim() == (0.0, 1.0) and surface.colorbar.ax is cbar_ax
    assert cbar_ax.get_ylabel() == "attack success rate (keyword judge)"
    floor, edge = _contours(ax)[0], _contours(ax)[1]
    assert _levels(floor) == [[round(v / 10, 6) for v in range(11)]]
    assert _levels(edge) == [[0.3]] and _colour(edge[0]) == TAU_RGBA
    assert ax.get_zlim() == pytest.approx((-0.25, 1.0))
    assert ax.get_xlabel() == "α: aligned\n(layer norm)" and ax.get_zlabel() == "ASR"
    assert ax.get_ylabel() == "β: harm\n(layer norm, ⊥)"
    _check_png_pdf(F.plot_surface(run2d, tmp_path / "out"))


def test_html_has_hover_fields_escaped(run2d, tmp_path):
    path = F.plot_html(run2d, tmp_path / "out")
    text = path.read_text()
    assert path.suffix == ".html" and text.startswith("<!doctype html>\n<html")
    assert f"{ANSWER} [1, 1]" in text  # a sample answer of the centre point
    assert "ASR = " in text and "Wilson 95%" in text
    # plotly.js beside the page (offline, written once per folder), not inlined
    assert 'src="plotly.min.js"' in text and path.stat().st_size < 200_000
    assert (path.parent / "plotly.min.js").stat().st_size > 1_000_000
    # model output is escaped: no raw tag, even inside the JSON
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)" in text
    assert "I cannot help" not in text  # only two answers per point


def test_html_1d_and_without_generations(run1d, tmp_path):
    text = F.plot_html(run1d, tmp_path / "out").read_text()
    assert f"{ANSWER} [2]" in text and "ASR = " in text
    bare = _write_run(tmp_path / "bare", ["aligned", "harm"], [[0.0, 1.0], [0.0, 1.0]], gens=False)
    assert "no answers stored" in F.plot_html(bare, tmp_path / "out").read_text()


def _bars(ax) -> list:
    """(x, y, lower end, upper end) per series drawn with error bars on `ax`."""
    out = []
    for c in ax.containers:
        line, _, (bars,) = c.lines
        ends = [seg[:, 1] for seg in bars.get_segments()]
        out.append((list(line.get_xdata()), list(line.get_ydata()), ends))
    return out


Z2 = 1.959963984540054**2


def test_lambda_sweep_draws_hs_and_fa_with_wilson_bars(lam_sweep, tmp_path):
    fig = F.draw_lambda(lam_sweep)
    hs_ax, fa_ax = fig.axes
    assert _texts(fig.legends[0]) == ["asft (flat)"]
    ((x, hs, ends),) = _bars(hs_ax)
    assert x == [0.0, 0.1, 1.0, 10.0] and hs == pytest.approx([100, 60, 5, 0])
    # Wilson at k = n = 95: [n / (n + z²), 1]; at k = 0: [0, z² / (n + z²)]
    assert ends[0] == pytest.approx([100 * 95 / (95 + Z2), 100])
    assert ends[-1] == pytest.approx([0, 100 * Z2 / (95 + Z2)])
    ((_, fa, _),) = _bars(fa_ax)
    assert fa == pytest.approx([80, 80, 80, 80])
    for ax in (hs_ax, fa_ax):
        assert ax.get_xscale() == "symlog" and list(ax.get_xticks()) == x
        assert ax.get_xlabel().startswith("penalty weight λ")
    assert hs_ax.get_ylabel() == "harmful score HS (%) ↓"
    assert fa_ax.get_ylabel() == "fine-tuning accuracy FA (%) ↑"
    _check_png_pdf(F.plot_lambda(lam_sweep, tmp_path / "out"))


def test_lr_sweep_one_series_per_method(lr_sweep, tmp_path):
    fig = F.draw_lr(lr_sweep)
    hs_ax, _ = fig.axes
    # λ (recorded as 0 for sft, 1 for asft) does not split a method without the penalty
    assert _texts(fig.legends[0]) == ["asft (flat)", "sft"]
    (asft, sft) = _bars(hs_ax)
    assert asft[:2] == ([3e-4, 3e-3], [0.0, 0.0]) and sft[:2] == ([3e-4, 3e-3], [100.0, 100.0])
    assert hs_ax.get_xscale() == "log"
    assert [t.get_text() for t in hs_ax.get_xticklabels()] == ["3e-4", "3e-3"]
    _check_png_pdf(F.plot_lr(lr_sweep, tmp_path / "out"))


def test_plot_run_draws_the_curve_or_the_plane(run1d, run2d):
    ax = F.draw_run(run1d).axes[0]
    assert _texts(ax.get_legend()) == ["Wilson 95%", "ASR (keyword)", "τ = 0.30"]
    asr, tau = ax.get_lines()
    assert list(asr.get_ydata()) == [1.0, 0.5, 0.0, 0.5, 1.0] and list(tau.get_ydata()) == [0.3] * 2
    fig = F.draw_run(run2d)
    ax, cbar_ax = fig.axes
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_clim() == (0.0, 1.0) and cbar_ax.get_ylabel() == "ASR (keyword)"
    assert mesh.get_array().reshape(3, 3)[1].tolist() == [0.5, 0.0, 0.5]  # the β = 0 row
    _, lines = _contours(ax)
    assert _levels(lines) == [[0.2, 0.4, 0.6, 0.8], [0.3]] and _colour(lines[1]) == TAU_RGBA
    assert ax.get_title() == "Safety landscape (basin edge: ASR = τ = 0.30)"
    # a plane whose ASR stays at or below 0.5 keeps the 0–1 colour bar: runs compare by eye
    low = _write_run(run2d.parent / "low", ["aligned", "harm"], [[-0.25, 0.0, 0.25]] * 2)
    (mesh,) = [c for c in F.draw_run(low).axes[0].collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().max() == 0.5 and mesh.get_clim() == (0.0, 1.0)
    for run in (run1d, run2d):
        out = F.plot_run(run)
        assert out == run / "landscape.png" and _is_png(out)


def test_drawing_leaves_the_backend_and_rc_settings_alone(run1d, run2d, tmp_path):
    """A notebook keeps its backend: nothing here imports pyplot or leaves rcParams changed."""
    code = (
        "import sys, matplotlib\n"
        "before = {k: v for k, v in matplotlib.rcParams.items() if k != 'backend'}\n"
        "import analysis.figures as F\n"
        "F.plot_run(sys.argv[1]); F.plot_contour(sys.argv[2], sys.argv[3])\n"
        "F.draw_curves([sys.argv[1]]); F.draw_surface(sys.argv[2])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "assert matplotlib.rcParams['backend'] == 'svg', matplotlib.rcParams['backend']\n"
        "after = {k: v for k, v in matplotlib.rcParams.items() if k != 'backend'}\n"
        "assert after == before, [k for k in before if before[k] != after[k]]\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(run1d), str(run2d), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "svg"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "analysis.figures", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"},
        timeout=120,
    )


def _main(capsys, *args: str) -> tuple[int, str, str]:
    """`main` in this process (fast): (exit status, stdout, stderr)."""
    try:
        rc = F.main(list(args))
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_cli_auto_writes_everything(run1d, run2d, lam_sweep, tmp_path):
    out = tmp_path / "figs"
    r = _cli(str(run1d), str(run2d), str(lam_sweep), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert names == {
        "one-curve.png", "one-curve.pdf", "two-contour.png", "two-contour.pdf",
        "two-surface.png", "two-surface.pdf", "two.html", "plotly.min.js",
        "sweep-lambda-lambda.png", "sweep-lambda-lambda.pdf",
    }  # fmt: skip
    assert all(_is_png(p) or _is_pdf(p) or p.suffix in (".html", ".js") for p in out.iterdir())


@pytest.fixture
def bad_inputs(tmp_path, run1d):
    not_run = tmp_path / "not-a-run"
    not_run.mkdir()
    (not_run / "notes.txt").write_text("hello")
    empty = _write_run(tmp_path / "empty", ["aligned", "harm"], [[0.0], [0.0]])
    (empty / "points.jsonl").write_text("")
    return {
        "not a run folder": ([str(not_run)], "not a run folder"),
        "missing": ([str(tmp_path / "nope")], "no such"),
        "no points": ([str(empty), "--kind", "contour"], "no finished points"),
        "2-D of 1-D": ([str(run1d), "--kind", "contour"], "needs a 2-D run"),
        "surface of 1-D": ([str(run1d), "--kind", "surface"], "needs a 2-D run"),
        "lambda of a run": ([str(run1d), "--kind", "lambda"], "not a folder of AsFT runs"),
        "usage": (["--kind", "pie", str(run1d)], "invalid choice"),
    }


def test_cli_bad_input_one_line_exit_2_nothing_written(bad_inputs, tmp_path, capsys):
    out = tmp_path / "figs"
    for case, (args, words) in bad_inputs.items():
        rc, stdout, stderr = _main(capsys, *args, "--out", str(out))
        assert rc == 2, (case, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], case
        assert stdout == ""
        assert not out.exists(), case
    # and through the real entry point once
    r = _cli(*bad_inputs["2-D of 1-D"][0], "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and not out.exists()


def test_bad_input_raises_landscape_error_before_writing(run1d, tmp_path, capsys):
    out = tmp_path / "figs"
    with pytest.raises(LandscapeError, match="needs a 2-D run"):
        F.plot_contour(run1d, out)
    with pytest.raises(LandscapeError, match="not a run folder"):
        F.plot_curves(tmp_path, out)
    # a good run after a bad one: the CLI checks all inputs before writing the first figure
    rc, _, err = _main(capsys, str(run1d), str(tmp_path / "nope"), "--out", str(out))
    assert rc == 2 and "no such" in err and not out.exists()


def test_no_two_series_look_alike_and_none_looks_like_the_reference_star():
    """A frontier with SFT, six baselines and AsFT's controls has more series than the
    palette has colours: the ninth must not repeat the first's colour and marker, and no
    series may take the star that marks the model before fine-tuning."""
    from analysis.figures.style import PALETTE, look

    looks = [look(i) for i in range(len(PALETTE) ** 2)]
    assert len(set(looks)) == len(looks)
    assert all(marker != "*" for _, marker in looks)


def test_one_direction_in_several_runs_keeps_one_colour(run1d, run2d, tmp_path):
    """Pairs or seeds of one direction: the colour says the direction, the marker the run."""
    import shutil

    other = tmp_path / "other-pair"
    shutil.copytree(run1d, other)
    (ax,) = F.draw_curves([run1d, other, run2d]).axes
    lines = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label()[0] not in "_τ"}
    harm = [ln for name, ln in lines.items() if name.startswith("harm (")]
    assert len(harm) == 2 and harm[0].get_color() == harm[1].get_color()
    assert harm[0].get_marker() != harm[1].get_marker()
    colours = {ln.get_color() for ln in lines.values()}
    assert len(colours) == 3  # harm, aligned, harm ⊥ aligned
    assert len({(ln.get_color(), ln.get_marker()) for ln in lines.values()}) == len(lines)
    # Runs of another pair: the marker says the pair, shared by all of that pair's lines.
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "pair_seed": 7}))
    (ax,) = F.draw_curves([run1d, other, run2d]).axes
    lines = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label()[0] not in "_τ"}
    markers = {name: ln.get_marker() for name, ln in lines.items()}
    mine = markers.pop("harm (other-pair)")
    assert len(set(markers.values())) == 1 and mine not in markers.values()
    assert lines["harm (one)"].get_color() == lines["harm (other-pair)"].get_color()
