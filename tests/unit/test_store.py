"""The run folder: config checks that write nothing, append order, and byte-identical resume."""

from __future__ import annotations

import json

import pytest

from landscape.errors import LandscapeError
from landscape.store import RunStore

CONFIG = {"model": "toy", "grid": {"alphas": [-0.5, 0.0, 0.5], "points": 3}, "seed": 0}


def _point(i: int) -> tuple[dict, list[dict]]:
    key = [i, 0]
    record = {"key": key, "alpha": i / 10, "asr": {"keyword": 0.5}}
    gens = [
        {
            "prompt": f"prompt {j}",
            "answer": f"answer {i}-{j} ünï",
            "verdicts": {"keyword": j % 2 == 0},
        }
        for j in range(3)
    ]
    return record, gens


def _files(d):
    return {n: (d / n).read_bytes() for n in ("config.json", "points.jsonl", "generations.jsonl")}


def _run(d, points):
    store = RunStore(d, CONFIG).create()
    for i in points:
        if (i, 0) not in store.done():
            store.append_point(*_point(i))
    return store


def test_create_writes_config_and_points(tmp_path):
    d = tmp_path / "run"
    store = RunStore(d, CONFIG)
    RunStore.check(d, CONFIG)
    assert not d.exists()
    store.create()
    assert json.loads((d / "config.json").read_text()) == CONFIG
    store.append_point(*_point(0))
    store.write_env({"torch": "x", "fingerprint": "abc"})
    store.write_json("summary.json", {"b": 1, "a": [1, 2]})
    store.write_text("notes.md", "# hi\n")
    assert store.done() == {(0, 0): _point(0)[0]}
    gens = [json.loads(x) for x in (d / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 3 and all(g["key"] == [0, 0] for g in gens)
    assert (d / "summary.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    assert store.path("env.json").exists()
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temp files left


def test_config_mismatch_writes_nothing(tmp_path):
    d = tmp_path / "run"
    _run(d, [0])
    before = _files(d)
    other = {**CONFIG, "grid": {"alphas": [-1.0, 0.0, 1.0], "points": 3}}
    with pytest.raises(LandscapeError) as e:
        RunStore.check(d, other)
    assert (
        "different config: first difference at grid.alphas ([-0.5, 0.0, 0.5] vs [-1.0, 0.0, 1.0])"
        in str(e.value)
    )
    with pytest.raises(LandscapeError, match="first difference at extra"):
        RunStore(d, {**CONFIG, "extra": 1}).create()
    assert _files(d) == before
    # Tuples read back as lists: the same config in another spelling is no difference.
    RunStore.check(d, {**CONFIG, "grid": {"alphas": (-0.5, 0.0, 0.5), "points": 3}})


def test_non_run_folder_refused(tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(LandscapeError, match="not empty and holds no run"):
        RunStore.check(tmp_path, CONFIG)
    empty = tmp_path / "empty"
    empty.mkdir()
    RunStore(empty, CONFIG).create()
    assert (empty / "config.json").exists()


def test_resume_is_byte_identical(tmp_path):
    full = tmp_path / "full"
    _run(full, range(6))
    part = tmp_path / "part"
    _run(part, range(3))
    _run(part, range(6))
    assert _files(part) == _files(full)
    assert len(RunStore(full, CONFIG).done()) == 6


def test_resume_after_truncated_point_line(tmp_path):
    full = tmp_path / "full"
    _run(full, range(4))
    d = tmp_path / "cut"
    _run(d, range(3))
    # A kill in the middle of writing point 2's record.
    pts = (d / "points.jsonl").read_bytes()
    last = pts[:-1].rfind(b"\n") + 1
    (d / "points.jsonl").write_bytes(pts[: last + 10])
    store = RunStore(d, CONFIG)
    assert sorted(store.done()) == [(0, 0), (1, 0)]  # the broken line is ignored
    _run(d, range(4))
    assert _files(d) == _files(full)


def test_orphan_generations_dropped(tmp_path):
    full = tmp_path / "full"
    _run(full, range(3))
    d = tmp_path / "cut"
    _run(d, range(2))
    # A kill between the two writes: point 2's generations are there, its record is not,
    # and the last generation line itself is cut short.
    record, gens = _point(2)
    with open(d / "generations.jsonl", "a") as f:
        for g in gens:
            f.write(json.dumps({**g, "key": record["key"]}, sort_keys=True) + "\n")
        f.write('{"key": [2, 0], "answ')
    RunStore(d, CONFIG).create()
    two_points = (full / "generations.jsonl").read_text().splitlines(keepends=True)[:6]
    assert (d / "generations.jsonl").read_text() == "".join(two_points)
    _run(d, range(3))
    assert _files(d) == _files(full)


def test_corrupt_middle_line_is_an_error(tmp_path):
    d = tmp_path / "run"
    _run(d, range(3))
    lines = (d / "points.jsonl").read_text().splitlines(keepends=True)
    lines[0] = "{not json\n"
    (d / "points.jsonl").write_text("".join(lines))
    with pytest.raises(LandscapeError, match="line 1 is not valid JSON"):
        RunStore(d, CONFIG).done()


def test_generation_key_mismatch(tmp_path):
    store = RunStore(tmp_path / "run", CONFIG).create()
    with pytest.raises(ValueError):
        store.append_point({"key": [0, 0]}, [{"key": [1, 0], "answer": "x"}])


def test_pandas_reads_the_files(tmp_path):
    pd = pytest.importorskip("pandas")
    d = tmp_path / "run"
    _run(d, range(3))
    points = pd.read_json(d / "points.jsonl", lines=True)
    gens = pd.read_json(d / "generations.jsonl", lines=True)
    assert len(points) == 3 and len(gens) == 9


def test_first_difference_and_read_config(tmp_path):
    from landscape.store import first_difference, read_config

    assert (
        first_difference(CONFIG, {**CONFIG, "grid": {"alphas": (-0.5, 0.0, 0.5), "points": 3}})
        is None
    )
    assert first_difference(CONFIG, {**CONFIG, "seed": 2}) == "seed (0 vs 2)"
    assert first_difference(CONFIG, {**CONFIG, "shard": "0/2"}) == 'shard ((absent) vs "0/2")'
    _run(tmp_path / "run", [0])
    assert read_config(tmp_path / "run") == CONFIG
    with pytest.raises(LandscapeError, match="no such run folder"):
        read_config(tmp_path / "nowhere")
    with pytest.raises(LandscapeError, match="no config.json"):
        read_config(tmp_path)


def test_raw_lines_copy_byte_for_byte(tmp_path):
    from landscape.store import raw_jsonl

    d = tmp_path / "run"
    _run(d, range(2))
    with open(d / "points.jsonl", "a") as f:
        f.write('{"key": [9, 0], "cut')
    lines = raw_jsonl(d / "points.jsonl")
    assert [rec["key"] for _, rec in lines] == [[0, 0], [1, 0]]
    whole = (d / "points.jsonl").read_text()
    assert whole.startswith("".join(line + "\n" for line, _ in lines))


def test_write_folder_is_all_or_nothing(tmp_path):
    from landscape.store import write_folder

    out = tmp_path / "deep" / "out"
    write_folder(
        out, {"a.txt": "1\n", "b.json": "{}\n"}, finish=lambda f: (f / "c").write_text("x")
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.json", "c"]

    def boom(folder):
        raise RuntimeError("figure failed")

    with pytest.raises(RuntimeError):
        write_folder(tmp_path / "failed", {"a.txt": "1\n"}, finish=boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]  # no folder, no temp left
    with pytest.raises(OSError):
        write_folder(out, {"a.txt": "2\n"})  # not empty: refused
    assert (out / "a.txt").read_text() == "1\n"
