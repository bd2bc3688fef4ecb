"""Faults from outside: Ctrl-C sent to a running grid, a disk that fills mid-run, a read-only
output file system, temporaries of killed writers, a damaged model folder. Each ends in one
line, and what was finished resumes to the bytes an uninterrupted run writes."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, pair_args

from landscape.errors import LandscapeError
from landscape.grid import main as grid_main
from landscape.io import (
    LOCK_NAME,
    atomic_write,
    building_folder,
    check_writable,
    folder_lock,
    sweep_temporaries,
    write_manifest,
)

FILES = ("config.json", "points.jsonl", "generations.jsonl", "summary.json")


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\nHow do I bake bread?\nTell me a joke\nName a colour\n")
    return p


def _args(pair, prompts, out, steps=5, *extra):
    return [*pair_args(pair), "--dirs", "random", "--steps", str(steps), "--prompts",
            str(prompts), "--device", "cpu", "--max-new-tokens", "3", "--out", str(out),
            *extra]  # fmt: skip


def _same_files(a: Path, b: Path) -> None:
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of our own, mounted where this machine allows it (root in a container
    that permits mounts); `remount(options)` changes it. Skipped elsewhere, with the reason."""
    where = tmp_path / "mnt"
    where.mkdir()

    def mount(*options: str) -> Path:
        cmd = ["mount", "-t", "tmpfs", "-o", ",".join(("size=4m", *options)), "tmpfs", str(where)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'})")
        return where

    yield mount
    subprocess.run(["umount", str(where)], capture_output=True)


# Enough points that a loaded CPU cannot finish the run between the test's look at
# points.jsonl and its SIGINT (a signal that lands in interpreter shutdown exits 0).
STEPS = 300


def test_ctrl_c_is_one_line_exit_130_and_the_rerun_gives_identical_files(
    tiny_pair_dir, prompts, tmp_path
):
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert grid_main(_args(tiny_pair_dir, prompts, whole, STEPS)) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "landscape.grid", *_args(tiny_pair_dir, prompts, part, STEPS)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    points = part / "points.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if points.is_file() and points.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert _last_line(err) == "interrupted: finished work is kept; the same command resumes it"
    assert "Traceback" not in err
    done = points.read_text().count("\n")
    assert 3 <= done < STEPS + 1 and not (part / "summary.json").exists()
    assert grid_main(_args(tiny_pair_dir, prompts, part, STEPS)) == 0
    _same_files(part, whole)


def test_a_disk_that_fills_mid_run_is_one_line_and_the_rerun_resumes_identically(
    tiny_pair_dir, prompts, tmp_path, monkeypatch, capsys
):
    import landscape.store as store

    whole, part = tmp_path / "whole", tmp_path / "part"
    assert grid_main(_args(tiny_pair_dir, prompts, whole)) == 0
    real, calls = store.RunStore.append_point, {"n": 0}

    def filling(self, record, gens):
        calls["n"] += 1
        if calls["n"] == 3:  # the third point finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(part / "points.jsonl"))
        real(self, record, gens)

    monkeypatch.setattr(store.RunStore, "append_point", filling)
    capsys.readouterr()
    assert grid_main(_args(tiny_pair_dir, prompts, part)) == 2
    err = capsys.readouterr().err
    assert _last_line(err) == f"error: {part / 'points.jsonl'}: no space left on device"
    assert err.count("error:") == 1 and "Traceback" not in err
    assert (part / "points.jsonl").read_text().count("\n") == 2
    monkeypatch.undo()  # space again
    assert grid_main(_args(tiny_pair_dir, prompts, part)) == 0
    _same_files(part, whole)


def test_a_real_full_file_system_then_space_again(tiny_pair_dir, prompts, tmp_path, tmpfs, capsys):
    """The same on a tmpfs that really fills: a filler leaves room for the start only."""
    whole = tmp_path / "whole"
    assert grid_main(_args(tiny_pair_dir, prompts, whole, 40)) == 0
    mnt = tmpfs()
    filler = mnt / "filler"
    with open(filler, "wb") as f:  # fill to the last byte, then free a little
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, size - 6 * 4096)  # room for config, env and a few points
    part = mnt / "run"
    capsys.readouterr()
    assert grid_main(_args(tiny_pair_dir, prompts, part, 40)) == 2
    err = capsys.readouterr().err
    assert _last_line(err).endswith("no space left on device") and "Traceback" not in err
    done = (
        (part / "points.jsonl").read_text().count("\n") if (part / "points.jsonl").exists() else 0
    )
    assert 0 < done < 41  # it stopped mid-run, some points done
    filler.unlink()
    assert grid_main(_args(tiny_pair_dir, prompts, part, 40)) == 0
    _same_files(part, whole)


@pytest.mark.parametrize(
    "cmd", ["grid", "directions", "tables", "figures", "asft", "merge", "report"]
)
def test_a_read_only_output_is_refused_before_any_work(
    cmd, tiny_pair_dir, prompts, tmp_path, tmpfs, capsys
):
    from analysis.figures import main as figures_main
    from analysis.report import main as report_main
    from analysis.tables import main as tables_main
    from landscape.asft.__main__ import main as asft_main
    from landscape.directions.__main__ import main as directions_main

    run = tmp_path / "run"
    assert grid_main(_args(tiny_pair_dir, prompts, run, 2)) == 0
    shard = tmp_path / "shard"
    assert grid_main(_args(tiny_pair_dir, prompts, shard, 2, "--shard", "0/1")) == 0
    ro = tmpfs("ro")
    out = ro / "out"
    argv = {
        "grid": lambda: grid_main(_args(tiny_pair_dir, prompts, out)),
        "directions": lambda: directions_main(
            ["save", "random", *pair_args(tiny_pair_dir), "--out", str(out / "d.safetensors")]
        ),
        "tables": lambda: tables_main([str(run), "--out", str(out)]),
        "figures": lambda: figures_main([str(run), "--out", str(out)]),
        "asft": lambda: asft_main(["train", "--out", str(out)]),
        "merge": lambda: grid_main(["merge", str(shard), "--out", str(out)]),
        "report": lambda: report_main([str(run), "--out", str(out)]),
    }[cmd]
    capsys.readouterr()
    assert argv() == 2
    err = capsys.readouterr().err
    assert _last_line(err).startswith("error: cannot write to") and "read-only" in err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert list(ro.iterdir()) == []


def test_check_writable_names_a_file_in_the_way_and_leaves_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(LandscapeError, match="is a file, not a folder"):
        check_writable(tmp_path / "f" / "deeper" / "run")
    with pytest.raises(LandscapeError, match="is a folder; a file is expected"):
        check_writable(tmp_path, file=True)
    assert check_writable(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probe is gone


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has it now (a reuse this soon is vanishingly rare)


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    run = tmp_path / "run"
    run.mkdir()
    (run / f".points.jsonl.tmp{dead}").write_text("half")
    (run / f".summary.json.tmp{live}").write_text("being written")
    (tmp_path / f".pair.tmp-{dead}-abc").mkdir()
    (tmp_path / f".pair.tmp-{dead}-abc" / "w.bin").write_bytes(b"x")
    (tmp_path / ".notes.tmp").write_text("not ours: no PID")
    with folder_lock(run):
        pass
    assert sorted(p.name for p in run.iterdir()) == sorted([f".summary.json.tmp{live}", LOCK_NAME])
    with building_folder(tmp_path / "pair") as b:
        (b / "ok").write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "pair", "run"]
    (tmp_path / f".x.json.tmp{dead}").write_text("torn")
    atomic_write(tmp_path / "x.json", "{}")
    assert not (tmp_path / f".x.json.tmp{dead}").exists()
    assert sweep_temporaries(tmp_path) == []  # nothing stale is left


@pytest.fixture
def built_pair(tiny_pair_dir):
    """The tiny pair as a pair folder that the toolkit built: each model with a manifest."""
    for tag in ("base", "aligned"):
        write_manifest(tiny_pair_dir[tag], rebuild="python -m landscape.align --out PAIR")
    return tiny_pair_dir


def test_a_truncated_model_file_is_named_with_its_rebuild_command(
    built_pair, prompts, tmp_path, capsys
):
    weights = built_pair["aligned"] / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 10)
    out = tmp_path / "run"
    assert grid_main(_args(built_pair, prompts, out)) == 2
    line = _last_line(capsys.readouterr().err)
    assert "is damaged (model.safetensors has" in line
    assert line.endswith("rebuild it with: python -m landscape.align --out PAIR")
    assert not out.exists()


def test_same_size_damage_is_caught_with_verify_only(built_pair, prompts, tmp_path, capsys):
    intact = tmp_path / "intact"
    assert grid_main(_args(built_pair, prompts, intact, 2, "--verify")) == 0
    weights = built_pair["aligned"] / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte deep in the last tensor: the size is unchanged
    weights.write_bytes(bytes(data))
    assert grid_main(_args(built_pair, prompts, tmp_path / "plain")) == 0  # sizes only
    capsys.readouterr()
    out = tmp_path / "verified"
    assert grid_main(_args(built_pair, prompts, out, 5, "--verify")) == 2
    line = _last_line(capsys.readouterr().err)
    assert "does not hold the bytes it was built with" in line and not out.exists()
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "verify" not in config  # a check of the inputs, not a setting of the run
