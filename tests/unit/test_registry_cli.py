"""The registries and plugins, the default world, and options declared in dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from landscape import registry
from landscape.cli import add_options, from_options, option
from landscape.errors import LandscapeError
from landscape.judges.options import JudgeOptions
from landscape.world import get_world, is_world_spec, world_of


def test_registry_lazy_entries_and_errors():
    r = registry.Registry("widget")
    r.register("path", "pathlib:PurePosixPath")  # imported only when asked for
    r.register("int", int)
    assert r.get("path").__name__ == "PurePosixPath" and r.get("int") is int
    with pytest.raises(LandscapeError, match="unknown widget 'nope': valid widgets are path, int"):
        r.get("nope")
    with pytest.raises(ValueError, match="registered already"):
        r.register("int", float)


def test_plugins_fill_the_registries():
    """The toy world and the figures come in through the package's entry points."""
    assert "toy" in registry.WORLDS
    assert "landscape.png" in registry.AFTER_RUN and "report.html" in registry.AFTER_RUN
    w = get_world()
    assert w.name == "toy" and w.judges == "keyword,toy"
    assert world_of("toy:harmful")[1] == "harmful" and world_of("file.csv") is None
    assert is_world_spec("toy:sst2") and not is_world_spec("data/toy.csv")


def test_a_missing_world_is_a_one_line_error():
    with pytest.raises(LandscapeError, match="no built-in 'elsewhere' world"):
        get_world("elsewhere")


def test_a_failing_after_run_hook_is_logged_not_raised(monkeypatch, caplog, tmp_path):
    calls = []

    def bad(folder, kind):
        calls.append(kind)
        raise LandscapeError("cannot draw")

    monkeypatch.setattr(registry, "AFTER_RUN", registry.Registry("after-run hook"))
    registry.AFTER_RUN.register("bad", bad)
    registry.after_run(tmp_path, "grid")
    assert calls == ["grid"] and "cannot draw" in caplog.text


@dataclass
class Demo(JudgeOptions):
    dirs: list[str] = option(help="directions", factory=lambda: ["aligned", "harm"])
    span: tuple[float, float] = option((-0.25, 0.25), "low high", nargs=2, type=float)
    steps: int = option(11, "points per axis")
    fast: bool = option(False, "go fast")
    hidden: str = option("x", "not on the command line", cli=False)


def test_options_come_from_the_dataclass():
    p = argparse.ArgumentParser()
    add_options(p, Demo)
    assert from_options(Demo, p.parse_args([])) == Demo()
    got = from_options(Demo, p.parse_args(["--dirs", "random", "--span", "-1", "2", "--fast",
                                           "--steps", "3", "--judge", "keyword"]))  # fmt: skip
    assert got == Demo(judge="keyword", dirs=["random"], span=(-1.0, 2.0), steps=3, fast=True)
    text = p.format_help()
    assert "points per axis (default: 11)" in text and "--judge-batch-size" in text
    assert "--hidden" not in text


def test_judge_options_are_checked_without_loading():
    with pytest.raises(LandscapeError, match="unknown judge 'nope'"):
        JudgeOptions(judge="keyword,nope").check_judges()
    with pytest.raises(LandscapeError, match="given twice"):
        JudgeOptions(judge="keyword,keyword").check_judges()
    assert JudgeOptions().judge_spec(on_world=True) == "keyword,toy"
    assert JudgeOptions().judge_spec(on_world=False) == "keyword"
