"""Sharded grids and their merge: the merged folder is the single-process run, byte for byte."""

from __future__ import annotations

import json

import pytest

from landscape.errors import LandscapeError
from landscape.grid import GridConfig, main, parse_shard, run_grid, shard_points
from landscape.store import RunStore

SAME = ("config.json", "points.jsonl", "generations.jsonl", "summary.json")


@pytest.fixture
def prompts_file(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\nHow do I bake bread?\nTell me how to fix a bike.\nWhat is 3 + 4?\n")
    return p


def _args(pair, prompts, *extra):
    return [
        "--base", str(pair["base"]), "--aligned", str(pair["aligned"]),
        "--prompts", str(prompts), "--dirs", "random:1", "random:2", "--steps", "3",
        "--device", "cpu", "--max-new-tokens", "4", "--batch-size", "2",
        *extra,
    ]  # fmt: skip


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("n, judges", [(2, []), (4, ["--judge", "keyword,toy"])])
def test_merged_shards_equal_a_single_run(n, judges, tiny_pair_dir, prompts_file, tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(_args(tiny_pair_dir, prompts_file, *judges, "--out", str(whole))) == 0
    if judges:  # the judges' agreement is over every answer, in the merged summary too
        assert "judge_agreement" in json.loads((whole / "summary.json").read_text())
    shards = [tmp_path / f"shard{i}" for i in range(n)]
    for i, out in enumerate(shards):
        args = _args(tiny_pair_dir, prompts_file, *judges, "--shard", f"{i}/{n}", "--out", str(out))
        assert main(args) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["shard"] == f"{i}/{n}"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["shard"] == f"{i}/{n}" and summary["epl"] == {}
        keys = [json.loads(x)["key"] for x in (out / "points.jsonl").read_text().splitlines()]
        assert keys == [[j // 3, j % 3] for j in range(i, 9, n)]  # every n-th, row-major
    capsys.readouterr()
    merged = tmp_path / "merged"
    # the folders in any order: merge puts the points in the grid's order
    assert main(["merge", *map(str, reversed(shards)), "--out", str(merged)]) == 0
    out = capsys.readouterr().out
    assert "EPL along random:1" in out and f"run folder: {merged}" in out
    for name in SAME:
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    assert (merged / "landscape.png").stat().st_size > 1000
    env = json.loads((merged / "env.json").read_text())
    assert [m["shard"] for m in env["merged_from"]] == [f"{i}/{n}" for i in range(n)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_a_killed_shard_resumes(tiny_pair_dir, prompts_file, tmp_path, monkeypatch):
    cfg = dict(
        base=str(tiny_pair_dir["base"]),
        aligned=str(tiny_pair_dir["aligned"]),
        prompts=str(prompts_file),
        dirs=["random:1"],
        steps=5,
        max_new_tokens=4,
        batch_size=2,
        device="cpu",
    )
    run_grid(GridConfig(**cfg, shard="1/2"), tmp_path / "whole1", show_progress=False)
    real = RunStore.append_point
    calls = {"n": 0}

    def dying(self, record, gens):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        real(self, record, gens)

    monkeypatch.setattr(RunStore, "append_point", dying)
    with pytest.raises(KeyboardInterrupt):
        run_grid(GridConfig(**cfg, shard="1/2"), tmp_path / "part1", show_progress=False)
    monkeypatch.setattr(RunStore, "append_point", real)
    # another shard cannot take over the folder; the same one resumes where it stopped
    with pytest.raises(LandscapeError, match="first difference at shard"):
        run_grid(GridConfig(**cfg, shard="0/2"), tmp_path / "part1", show_progress=False)
    run_grid(GridConfig(**cfg, shard="1/2"), tmp_path / "part1", show_progress=False)
    for name in SAME:
        assert (tmp_path / "part1" / name).read_bytes() == (tmp_path / "whole1" / name).read_bytes()


def test_shard_points_partition_the_grid():
    cfg = GridConfig(dirs=["random:1", "random:2"], steps=4, range=(-1.0, 1.0))  # 5x5 with 0
    axes = cfg.axes()
    for n in (1, 2, 3, 7, 30):
        parts = [shard_points(axes, f"{i}/{n}") for i in range(n)]
        flat = [k for p in parts for k in p]
        assert sorted(flat) == shard_points(axes, None) and len(flat) == 25
        assert all(len(p) in (25 // n, -(-25 // n)) for p in parts)  # balanced
    assert parse_shard(" 2 / 5 ") == (2, 5)


@pytest.mark.parametrize(
    "shard, message",
    [
        ("3/2", "out of range"),
        ("2/2", "out of range"),
        ("0/0", "out of range"),
        ("a/b", "takes I/N"),
        ("-1/2", "takes I/N"),
        ("1/2/3", "takes I/N"),
        ("1", "takes I/N"),
        ("", "takes I/N"),
    ],
)
def test_bad_shard_exits_2_and_writes_nothing(
    shard, message, tiny_pair_dir, prompts_file, tmp_path, capsys
):
    out = tmp_path / "run"
    # --shard=VALUE: "-1/2" would otherwise read as an option
    assert main(_args(tiny_pair_dir, prompts_file, f"--shard={shard}", "--out", str(out))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()


@pytest.fixture
def two_shards(tiny_pair_dir, prompts_file, tmp_path):
    runs = []
    for i in range(2):
        out = tmp_path / f"s{i}"
        assert main(_args(tiny_pair_dir, prompts_file, "--shard", f"{i}/2", "--out", str(out))) == 0
        runs.append(out)
    return runs


def _bad_merge(args, message, tmp_path, capsys):
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main(["merge", *map(str, args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err, err
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_missing_and_overlapping_shards(two_shards, tmp_path, capsys):
    s0, s1 = two_shards
    out = ["--out", tmp_path / "merged"]
    _bad_merge([s0, *out], "shard 1/2 missing", tmp_path, capsys)
    _bad_merge([s0, s0, s1, *out], "both shard 0/2", tmp_path, capsys)
    # a folder holding a point of another shard (copied in by hand)
    other = (s1 / "points.jsonl").read_text().splitlines(keepends=True)[0]
    with open(s0 / "points.jsonl", "a") as f:
        f.write(other)
    _bad_merge([s0, s1, *out], "points overlap", tmp_path, capsys)


def test_merge_refuses_other_configs(two_shards, tiny_pair_dir, prompts_file, tmp_path, capsys):
    s0, s1 = two_shards
    other = tmp_path / "other"
    assert (
        main(
            _args(tiny_pair_dir, prompts_file, "--shard", "1/2", "--seed", "5", "--out", str(other))
        )
        == 0
    )
    out = ["--out", tmp_path / "merged"]
    _bad_merge([s0, other, *out], "first difference at seed (0 vs 5)", tmp_path, capsys)
    three = tmp_path / "three"
    assert main(_args(tiny_pair_dir, prompts_file, "--shard", "1/3", "--out", str(three))) == 0
    _bad_merge([s0, three, *out], "share N", tmp_path, capsys)
    whole = tmp_path / "whole"
    assert main(_args(tiny_pair_dir, prompts_file, "--out", str(whole))) == 0
    _bad_merge([s0, s1, whole, *out], "not a shard", tmp_path, capsys)
    _bad_merge([s0, tmp_path / "nowhere", *out], "no such run folder", tmp_path, capsys)


def test_merge_refuses_unfinished_shards_and_used_folders(two_shards, tmp_path, capsys):
    s0, s1 = two_shards
    full = (s1 / "points.jsonl").read_text().splitlines(keepends=True)
    (s1 / "points.jsonl").write_text("".join(full[:-1]))
    _bad_merge([s0, s1, "--out", tmp_path / "merged"], "finish it first", tmp_path, capsys)
    (s1 / "points.jsonl").write_text("".join(full))
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    _bad_merge([s0, s1, "--out", used], "not an empty folder", tmp_path, capsys)
    # an empty folder is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["merge", str(s0), str(s1), "--out", str(empty)]) == 0
    assert (empty / "points.jsonl").exists()


def test_merge_usage_errors_are_one_line(capsys):
    for argv in (["merge"], ["merge", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
