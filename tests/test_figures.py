"""Figures from hand-made run folders: every command writes real files, bad input is one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis import figures as F
from landscape.errors import LandscapeError

PNG = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]
ANSWER = "Sure, here is the plan for point"
HOSTILE = "<script>alert(1)</script> & more"


def _wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.96
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


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
        lo, hi = _wilson(k, n)
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
        [{"name": f"{m}-{lr:g}", "method": m, "lam": 1.0, "lr": lr, "hs": hs, "fa": 0.7}
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


def test_curves_one_and_several_runs(run1d, run2d, tmp_path):
    _check_png_pdf(F.plot_curves(run1d, tmp_path / "a"))
    paths = F.plot_curves([run1d, run2d], tmp_path / "b")
    _check_png_pdf(paths)
    assert {p.name for p in paths} == {"curves.png", "curves.pdf"}


def test_contour_and_surface(run2d, tmp_path):
    _check_png_pdf(F.plot_contour(run2d, tmp_path / "out"))
    _check_png_pdf(F.plot_surface(run2d, tmp_path / "out"))


def test_html_has_hover_fields_escaped(run2d, tmp_path):
    path = F.plot_html(run2d, tmp_path / "out")
    text = path.read_text()
    assert path.suffix == ".html" and "<html>" in text[:200]
    assert f"{ANSWER} [1, 1]" in text  # a sample answer of the centre point
    assert "ASR = " in text and "Wilson 95%" in text
    assert "cdn.plot.ly" in text and path.stat().st_size < 200_000  # plotly.js not inlined
    # model output is escaped: no raw tag, even inside the JSON
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)" in text
    assert "I cannot help" not in text  # only two answers per point


def test_html_1d_and_without_generations(run1d, tmp_path):
    text = F.plot_html(run1d, tmp_path / "out").read_text()
    assert f"{ANSWER} [2]" in text and "ASR = " in text
    bare = _write_run(tmp_path / "bare", ["aligned", "harm"], [[0.0, 1.0], [0.0, 1.0]], gens=False)
    assert "no answers stored" in F.plot_html(bare, tmp_path / "out").read_text()


def test_lambda_and_lr(lam_sweep, lr_sweep, tmp_path):
    _check_png_pdf(F.plot_lambda(lam_sweep, tmp_path / "out"))
    _check_png_pdf(F.plot_lr(lr_sweep, tmp_path / "out"))


def test_plot_run_still_writes_landscape_png(run1d, run2d):
    for run in (run1d, run2d):
        out = F.plot_run(run)
        assert out == run / "landscape.png" and _is_png(out)


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
        "two-surface.png", "two-surface.pdf", "two.html",
        "sweep-lambda-lambda.png", "sweep-lambda-lambda.pdf",
    }  # fmt: skip
    assert all(_is_png(p) or _is_pdf(p) or p.suffix == ".html" for p in out.iterdir())


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
