"""The outcome figures from hand-made run folders: stacked shares with utility on a second
axis along each direction, three panels over a plane with the safe-and-useful region
outlined; auto mode draws them only where the points carry what they show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection, QuadMesh
from matplotlib.colors import to_rgba

from analysis import figures as F
from analysis.figures.curves import OUTCOME_COLOURS, UTILITY_COLOUR, draw_outcomes
from analysis.figures.plane import draw_panels
from landscape.errors import LandscapeError
from landscape.utility import utility_record


def _point(key, coords, split: bool):
    far = min(1.0, sum(abs(c) for c in coords))
    p = {"key": key, "coords": coords, "n": 10, "n_unsafe": 0, "asr": far / 2, "lo": 0, "hi": 1}
    if split:
        inc = far / 2
        p["outcomes"] = {
            "refused": {"share": 1 - far / 2 - inc},
            "complied": {"share": far / 2},
            "incoherent": {"share": inc},
        }
        correct = round(10 * (1 - far))
        p["utility"] = utility_record([False] * 10, [i < correct for i in range(10)])
    return p


def _run(folder: Path, dirs, axes, split=True, region=()) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dirs": dirs, "norm": "layer"}))
    keys = [(i,) for i in range(len(axes[0]))]
    if len(axes) == 2:
        keys = [(i, j) for i in range(len(axes[0])) for j in range(len(axes[1]))]
    points = [_point(list(k), [axes[d][i] for d, i in enumerate(k)], split) for k in keys]
    (folder / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    summary = {"dirs": dirs, "norm": "layer", "judge": "keyword", "tau": 0.1, "epl": {}}
    if split:
        inside = [{"key": p["key"], "coords": p["coords"]} for p in points if p["key"] in region]
        summary["utility"] = {
            "measure": "accuracy", "n": 10, "utility_origin": 1.0, "refused_origin": 0.0,
            "margin": 0.1, "utility_edge": {},
            "safe_useful": {"tau": 0.1, "incoherent_max": 0.1, "utility_min": 0.9,
                            "size": len(inside), "of": len(points), "points": inside},
        }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


AXIS = [-0.2, -0.1, 0.0, 0.1, 0.2]


def test_stacked_shares_sum_to_one_with_utility_on_a_second_axis(tmp_path):
    run = _run(tmp_path / "line", ["aligned"], [AXIS])
    fig = draw_outcomes(run)
    ax, twin = fig.axes[0], fig.axes[1]
    stacks = ax.collections
    assert [to_rgba(c.get_facecolor()[0]) for c in stacks] == [
        to_rgba(c, 0.85) for c in OUTCOME_COLOURS.values()
    ]
    top = stacks[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0)  # refused + complied + incoherent = every answer
    (u,) = [line for line in twin.get_lines() if line.get_color() == UTILITY_COLOUR]
    assert list(u.get_ydata()) == pytest.approx([0.8, 0.9, 1.0, 0.9, 0.8])
    written = F.plot_outcomes(run, tmp_path / "figs")
    assert [p.name for p in written] == ["line-outcomes.png", "line-outcomes.pdf"]


def test_three_panels_outline_the_region(tmp_path):
    axes = [[-0.1, 0.0, 0.1], [-0.1, 0.0, 0.1]]
    region = [[1, 1], [1, 2], [2, 1]]
    run = _run(tmp_path / "plane", ["aligned", "harm"], axes, region=region)
    fig = draw_panels(run)
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels][:2] == ["harmful (complied, coherent)", "incoherent"]
    assert panels[2].get_title() == "utility (accuracy)"
    for ax in panels:
        meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
        assert len(meshes) == 1
        rings = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert len(rings[0].get_xdata()) == len(region)
        (outline,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        # three cells in an L: eight cell sides border the outside
        assert len(outline.get_segments()) == 8
    util = [c for c in panels[2].collections if isinstance(c, QuadMesh)][0].get_array()
    assert float(np.asarray(util).reshape(3, 3)[1, 1]) == pytest.approx(1.0)  # the origin
    assert "3 of 9 points" in fig._suptitle.get_text()


def test_auto_draws_them_only_for_runs_that_carry_them(tmp_path):
    split = _run(tmp_path / "split", ["aligned", "harm"], [[-0.1, 0.0, 0.1]] * 2)
    plain = _run(tmp_path / "plain", ["aligned", "harm"], [[-0.1, 0.0, 0.1]] * 2, split=False)
    kinds = {(fn.__name__, Path(arg).name) for fn, arg in F.plan([split, plain], "auto")}
    assert ("plot_panels", "split") in kinds and ("plot_outcomes", "split") in kinds
    assert not {k for k in kinds if k[1] == "plain" and k[0] in ("plot_panels", "plot_outcomes")}
    with pytest.raises(LandscapeError, match="neither coherence outcomes nor utility"):
        F.plan([plain], "panels")
    with pytest.raises(LandscapeError, match="neither coherence outcomes nor utility"):
        F.plan([plain], "outcomes")
