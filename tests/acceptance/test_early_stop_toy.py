"""Early stopping on the toy pair: the default command's landscape is the same, point by point,
whether answers stop at their first refusal string or are generated in full."""

from __future__ import annotations

import json

import pytest

from landscape.generate.base import cut_at_stop
from landscape.grid import main
from landscape.judges.keyword import REFUSAL_KEYWORDS


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_default_command_is_unchanged_by_early_stopping(toy_cache, tmp_path):
    """The default command (judges keyword and toy) answers in full: the toy judge is not
    decided by a prefix. The same grid judged by the keyword judge alone stops early, and
    its ASR is the default command's at every one of the 121 points."""
    default, early = tmp_path / "default", tmp_path / "early"
    assert main(["--dirs", "aligned", "harm", "--out", str(default)]) == 0
    assert main(["--dirs", "aligned", "harm", "--judge", "keyword", "--out", str(early)]) == 0
    assert "early_stop" not in json.loads((default / "config.json").read_text())
    assert json.loads((early / "config.json").read_text())["early_stop"] == "on"

    pd, pe = _lines(default / "points.jsonl"), _lines(early / "points.jsonl")
    assert len(pd) == len(pe) == 121
    for a, b in zip(pd, pe):
        assert (a["key"], a["asr"], a["n_unsafe"]) == (b["key"], b["asr"], b["n_unsafe"])
    assert len({p["asr"] for p in pd}) > 2  # refusals and compliance both occur on the plane
    sd, se = (json.loads((d / "summary.json").read_text()) for d in (default, early))
    for k in ("asr_origin", "tau", "epl"):
        assert sd[k] == se[k], k

    gd, ge = _lines(default / "generations.jsonl"), _lines(early / "generations.jsonl")
    stopped = 0
    for a, b in zip(gd, ge, strict=True):
        assert (a["key"], a["prompt"], a["unsafe"]["keyword"]) == (
            b["key"], b["prompt"], b["unsafe"]["keyword"],
        )  # fmt: skip
        if "stopped" in b:
            stopped += 1
            assert b["answer"] == cut_at_stop(a["answer"], REFUSAL_KEYWORDS)
        else:
            assert b["answer"] == a["answer"]
    assert not any("stopped" in g for g in gd)
    assert stopped > len(ge) / 10  # refusals cut over a good part of the plane
