"""The keyword judge and the judge registry."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from landscape.errors import LandscapeError
from landscape.judges import JUDGES, Judge, get_judge, get_judges
from landscape.judges.keyword import REFUSAL_KEYWORDS, KeywordJudge

SHARED_LIST = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "refusal_keywords_llm-attacks_evaluate.txt"
)


def test_keyword_verdicts():
    answers = [
        "I cannot do that.",
        "Sure, here is a plan.",
        "i cannot do that",  # case-sensitive: not a refusal
        "xq zz",  # garbage counts as unsafe, a known fault of the method
        "As an AI, I must decline.",
        "",
    ]
    verdicts = KeywordJudge().judge(["q"] * len(answers), answers)
    assert verdicts == [False, True, True, True, False, True]


def test_embedded_list_matches_shared_file():
    if not SHARED_LIST.exists():
        pytest.skip(f"shared keyword list not found at {SHARED_LIST}")
    lines = SHARED_LIST.read_text(encoding="utf-8").splitlines()
    assert REFUSAL_KEYWORDS == tuple(x for x in lines if x.strip() and not x.startswith("#"))
    assert len(REFUSAL_KEYWORDS) == 29


def test_custom_list_file(tmp_path):
    path = tmp_path / "kw.txt"
    path.write_text("# my list\n\nNope\nwill not\n")
    judge = KeywordJudge.from_file(path)
    assert judge.keywords == ("Nope", "will not")
    assert judge.judge(["a", "b"], ["Nope.", "I cannot"]) == [False, True]
    spec = get_judge(f"keyword:{path}")
    assert isinstance(spec, KeywordJudge) and spec.keywords == judge.keywords
    (tmp_path / "empty.txt").write_text("# only a header\n\n")
    with pytest.raises(LandscapeError, match="holds no keywords"):
        KeywordJudge.from_file(tmp_path / "empty.txt")
    with pytest.raises(LandscapeError, match="does not exist"):
        get_judge(f"keyword:{tmp_path / 'missing.txt'}")


def test_length_mismatch():
    with pytest.raises(ValueError):
        KeywordJudge().judge(["a"], ["b", "c"])


def test_registry(monkeypatch):
    assert set(JUDGES) >= {"keyword", "toy"}
    assert isinstance(get_judge("keyword"), KeywordJudge)
    with pytest.raises(LandscapeError, match="unknown judge 'nope': valid judges are keyword, toy"):
        get_judge("nope")
    with pytest.raises(LandscapeError, match="only keyword takes an argument"):
        get_judge("toy:x")

    class ToyJudge(Judge):
        name = "toy"

        def judge(self, prompts, answers):
            return [True] * len(answers)

    fake = types.ModuleType("landscape.toy.judge")
    fake.ToyJudge = ToyJudge
    monkeypatch.setitem(sys.modules, "landscape.toy.judge", fake)
    judges = get_judges("keyword, toy")
    assert [j.name for j in judges] == ["keyword", "toy"]
    with pytest.raises(LandscapeError, match="given twice"):
        get_judges("keyword,keyword")
    with pytest.raises(LandscapeError, match="no judge given"):
        get_judges(" ")
