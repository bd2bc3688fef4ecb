"""Judges by name, imported only when chosen: `keyword`, `keyword:PATH`, `toy`."""

from __future__ import annotations

import importlib

from landscape.errors import LandscapeError
from landscape.judges.base import Judge

# name -> "module:Class"; a judge model's heavy imports happen only when it is asked for.
JUDGES: dict[str, str] = {
    "keyword": "landscape.judges.keyword:KeywordJudge",
    "toy": "landscape.toy.judge:ToyJudge",
}


def _judge_class(name: str) -> type[Judge]:
    if name not in JUDGES:
        raise LandscapeError(f"unknown judge {name!r}: valid judges are {', '.join(JUDGES)}")
    module, cls = JUDGES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_judge(spec: str) -> Judge:
    """A judge from `NAME` or `NAME:ARG` (only `keyword:PATH` takes an argument: a list file)."""
    name, sep, arg = spec.strip().partition(":")
    cls = _judge_class(name)
    if not sep:
        return cls()
    if name == "keyword" and arg:
        return cls.from_file(arg)
    raise LandscapeError(f"judge {spec!r}: only keyword takes an argument (keyword:PATH)")


def get_judges(specs: str) -> list[Judge]:
    """Judges from a comma-separated list such as `keyword,toy`; names must not repeat."""
    judges = [get_judge(s) for s in specs.split(",") if s.strip()]
    if not judges:
        raise LandscapeError(f"no judge given: valid judges are {', '.join(JUDGES)}")
    names = [j.name for j in judges]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise LandscapeError(
            f"judge {dup!r} given twice: each judge's verdicts need their own name"
        )
    return judges


__all__ = ["JUDGES", "Judge", "get_judge", "get_judges"]
