"""The adaptive EPL search through the grid command, on the tiny pair."""

from __future__ import annotations

import json

import pytest

from landscape import metrics

# --- through the grid command, on the tiny pair ------------------------------------------


@pytest.fixture
def prompts_file(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\n" + "".join(f"Question number {i} about bread?\n" for i in range(12)))
    return p


def _args(pair, prompts, out, *extra):
    return [
        "--base", str(pair["base"]), "--aligned", str(pair["aligned"]),
        "--prompts", str(prompts), "--device", "cpu", "--max-new-tokens", "4",
        "--batch-size", "4", "--out", str(out), "--epl-search", "--epl-batch", "4",
        *extra,
    ]  # fmt: skip


def _read(out):
    return [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines()]


def test_grid_search_records_points_and_resumes(
    tiny_pair_dir, prompts_file, tmp_path, monkeypatch, capsys
):
    from landscape import grid
    from landscape.grid import point
    from landscape.store import RunStore

    # The tiny models answer gibberish that the keyword judge calls unsafe throughout; with
    # τ = 1 nothing is unsafe, so each side is probed out to the range end: 1 + 2·2·2 points.
    extra = ("--dirs", "random:1", "random:2", "--tau", "1", "--range", "-2", "2", "--steps", "5")
    whole = tmp_path / "whole"
    assert grid.main(_args(tiny_pair_dir, prompts_file, whole, *extra)) == 0
    printed = capsys.readouterr().out
    summary = json.loads((whole / "summary.json").read_text())
    pts = _read(whole)
    assert summary["search"]["generations"] == sum(p["n"] for p in pts)
    assert all(p["unsafe"] is False for p in pts)  # every point carries its decision
    assert f"{summary['search']['generations']} generations" in printed
    # τ = 1: both sides of both directions are safe to the range end, printed as at least it
    assert printed.count("negative side ≥ 2.000, positive side ≥ 2.000, both ≥ 2.000") == 2
    assert [p["key"] for p in pts] == [[i] for i in range(len(pts))]
    # each point lies on one axis through the origin; the origin is evaluated once
    assert all(p["coords"][0] == 0.0 or p["coords"][1] == 0.0 for p in pts)
    assert sum(p["coords"] == [0.0, 0.0] for p in pts) == 1
    assert sorted(p["coords"] for p in pts) == sorted(
        [[0.0, 0.0]]
        + [[a, 0.0] for a in (-2.0, -1.0, 1.0, 2.0)]
        + [[0.0, a] for a in (-2.0, -1.0, 1.0, 2.0)]
    )
    for i, name in enumerate(["random:1", "random:2"]):
        e = summary["epl"][name]
        curve = sorted((p["coords"][i], p["asr"]) for p in pts if p["coords"][1 - i] == 0.0)
        dense = metrics.epl([a for a, _ in curve], [s for _, s in curve], 1.0)
        assert (e["neg"], e["pos"]) == (dense["neg"], dense["pos"])
    gens = [json.loads(x) for x in (whole / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == summary["search"]["generations"]

    part = tmp_path / "part"
    real = RunStore.append_point
    calls = {"n": 0}

    def dying(self, record, g):
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        real(self, record, g)

    monkeypatch.setattr(RunStore, "append_point", dying)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # Ctrl-C: one line, exit 130, work kept
        grid.main(_args(tiny_pair_dir, prompts_file, part, *extra))
    assert stop.value.code == 130
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bars
    assert last == "interrupted: finished work is kept; the same command resumes it"
    monkeypatch.setattr(RunStore, "append_point", real)
    before = (part / "points.jsonl").read_text().splitlines()
    assert len(before) == 3
    assert grid.main(_args(tiny_pair_dir, prompts_file, part, *extra)) == 0
    for name in ("config.json", "points.jsonl", "generations.jsonl", "summary.json"):
        assert (part / name).read_bytes() == (whole / name).read_bytes(), name
    # finished: a third run evaluates nothing
    monkeypatch.setattr(point, "perturbed", lambda *a, **k: pytest.fail("recomputed a point"))
    assert grid.main(_args(tiny_pair_dir, prompts_file, part, *extra)) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--epl-tol", "0"), "--epl-tol"),
        (("--epl-batch", "0"), "--epl-batch"),
        (("--epl-confidence", "1"), "--epl-confidence"),
        (("--range", "0.1", "0.3"), "around 0"),
        (("--shard", "0/2"), "cannot be split"),
    ],
)
def test_grid_search_bad_input(extra, message, tiny_pair_dir, prompts_file, tmp_path, capsys):
    from landscape import grid

    out = tmp_path / "run"
    assert grid.main(_args(tiny_pair_dir, prompts_file, out, "--dirs", "random", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()
