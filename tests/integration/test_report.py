"""report.html after a tiny-model grid: every whole run gets one, a shard none, its merge one,
and `analysis.report` remakes the same bytes from the folder alone."""

from __future__ import annotations

import json
import re

import pytest
from helpers import PROMPTS, pair_args

from analysis.report import main as report_main
from landscape.grid import main as grid_main


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\n" + "".join(f'"{q}"\n' for q in PROMPTS))
    return p


def _grid(pair, prompts, out, *extra):
    return [*pair_args(pair), "--dirs", "random:1", "random:2", "--steps", "3", "--prompts",
            str(prompts), "--device", "cpu", "--max-new-tokens", "4", "--judge", "keyword,toy",
            "--out", str(out), *extra]  # fmt: skip


def _data(path) -> dict:
    text = path.read_text()
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def test_a_grid_run_gets_its_report_a_shard_none_and_the_merge_one(
    tiny_pair_dir, prompts, tmp_path, capsys
):
    whole = tmp_path / "whole"
    assert grid_main(_grid(tiny_pair_dir, prompts, whole)) == 0
    data = _data(whole / "report.html")
    gens = [json.loads(x) for x in (whole / "generations.jsonl").read_text().splitlines()]
    assert len(data["points"]) == 9 and len(gens) == 9 * len(PROMPTS)
    for g in gens:  # every answer, with its verdicts, under its point
        at = data["answers"][",".join(map(str, g["key"]))]
        assert {"answer": g["answer"], "unsafe": g["unsafe"]}.items() <= next(
            a for a in at if a["prompt"] == g["prompt"]
        ).items()
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, out in enumerate(shards):
        assert grid_main(_grid(tiny_pair_dir, prompts, out, "--shard", f"{i}/2")) == 0
        assert not (out / "report.html").exists()  # a scattering of the grid: no report
    merged = tmp_path / "merged"
    assert grid_main(["merge", *map(str, shards), "--out", str(merged)]) == 0
    got = _data(merged / "report.html")
    assert got["points"] == data["points"] and got["answers"] == data["answers"]
    assert "Run report: merged" in (merged / "report.html").read_text()  # not the hidden folder's
    capsys.readouterr()
    assert report_main([str(shards[0])]) == 2  # and analysis.report refuses a shard
    assert "is shard 0/2" in capsys.readouterr().err


def test_analysis_report_remakes_the_grids_report_byte_for_byte(tiny_pair_dir, prompts, tmp_path):
    run = tmp_path / "run"
    assert grid_main(_grid(tiny_pair_dir, prompts, run, "--dirs", "random:1")) == 0
    first = (run / "report.html").read_bytes()
    (run / "report.html").unlink()
    assert report_main([str(run)]) == 0
    assert (run / "report.html").read_bytes() == first  # no random ids, no clock: the folder alone
    data = _data(run / "report.html")
    assert [t["type"] for t in data["figure"]["data"]] == ["scatter", "scatter"]  # band, curve
    assert len(data["figure"]["data"][1]["x"]) == 3


def test_a_full_disk_costs_the_report_not_the_run(tiny_pair_dir, prompts, tmp_path, monkeypatch):
    import errno

    import analysis.report.build as build

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "report.html")

    monkeypatch.setattr(build, "atomic_write", full)
    run = tmp_path / "run"
    assert grid_main(_grid(tiny_pair_dir, prompts, run)) == 0  # logged, never fatal
    assert (run / "summary.json").is_file() and not (run / "report.html").exists()
