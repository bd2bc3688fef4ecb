"""Judges by name, imported only when chosen.

`keyword` or `keyword:FILE` (a refusal-string list), `toy`, and the model judges
`llama-guard`, `beaver-dam`, `harmbench`, each as `NAME` (default weights from the hub) or
`NAME:WEIGHTS` (a local folder or a hub id).
"""

from __future__ import annotations

import itertools
import math

from landscape.errors import LandscapeError
from landscape.judges.base import Judge
from landscape.registry import Registry

# name -> "module:Class"; a judge model's heavy imports happen only when it is asked for.
# Worlds add their own judges through plugins (the toy world's `toy`).
JUDGES = Registry("judge")
JUDGES.register("keyword", "landscape.judges.keyword:KeywordJudge")
JUDGES.register("llama-guard", "landscape.judges.llama_guard:LlamaGuardJudge")
JUDGES.register("beaver-dam", "landscape.judges.beaver_dam:BeaverDamJudge")
JUDGES.register("harmbench", "landscape.judges.harmbench:HarmBenchJudge")
# Judges that run a model: NAME:WEIGHTS, default weights when the argument is left out.
MODEL_JUDGES: dict[str, str] = {
    "llama-guard": "meta-llama/Llama-Guard-3-8B",
    "beaver-dam": "PKU-Alignment/beaver-dam-7b",
    "harmbench": "cais/HarmBench-Llama-2-13b-cls",
}


def parse_specs(specs: str) -> list[tuple[str, str, bool]]:
    """(name, argument, whether a colon was given) for each judge of a comma-separated list
    such as `keyword,llama-guard:WEIGHTS`. Names must be known and must not repeat; nothing
    is loaded, so a command can check its --judge before it writes anything."""
    out = []
    for part in str(specs).split(","):
        if not part.strip():
            continue
        name, sep, arg = part.strip().partition(":")
        out.append((name.strip(), arg.strip(), bool(sep)))
    if not out:
        raise LandscapeError(f"no judge given: valid judges are {', '.join(JUDGES)}")
    names = [n for n, _, _ in out]
    for n in names:
        JUDGES.check(n)
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise LandscapeError(
            f"judge {dup!r} given twice: each judge's verdicts need their own name"
        )
    return out


def get_judge(
    spec: str, *, batch_size: int = 8, dtype: str = "auto", device: str = "auto"
) -> Judge:
    """A judge from `NAME` or `NAME:ARG`: `keyword:FILE` (a keyword list) or, for a model
    judge, `NAME:WEIGHTS` (folder or hub id). Model judges load their weights here, once;
    `batch_size`, `dtype` and `device` apply to them only."""
    specs = parse_specs(spec)
    if len(specs) != 1:
        raise LandscapeError(f"one judge expected, got {spec!r} (get_judges takes a list)")
    [(name, arg, sep)] = specs
    cls = JUDGES.get(name)
    if name in MODEL_JUDGES:
        return cls(arg or MODEL_JUDGES[name], batch_size=batch_size, dtype=dtype, device=device)
    if not sep:
        return cls()
    if name == "keyword":
        if not arg:
            raise LandscapeError(
                f"judge {spec!r}: give a keyword file after the colon (keyword:FILE)"
            )
        return cls.from_file(arg)
    raise LandscapeError(
        f"judge {spec!r}: {name} takes no argument (keyword:FILE and NAME:WEIGHTS for "
        f"{', '.join(MODEL_JUDGES)} do)"
    )


def get_judges(
    specs: str, *, batch_size: int = 8, dtype: str = "auto", device: str = "auto"
) -> list[Judge]:
    """Judges from a comma-separated list such as `keyword,llama-guard`; names must not repeat.
    All names are checked before any judge model is loaded."""
    parts = [s for s in specs.split(",") if s.strip()]
    parse_specs(specs)  # every name checked before any judge model is loaded
    return [get_judge(s, batch_size=batch_size, dtype=dtype, device=device) for s in parts]


def judge_answers(
    judges: list[Judge], prompts: list[str], answers: list[str]
) -> tuple[dict[str, list[bool]], dict[str, list[dict]]]:
    """Every judge's verdicts on the answers, and what each saw (raw output, categories,
    scores), by judge name; judges with nothing more to say are left out of the second."""
    verdicts, evidence = {}, {}
    for j in judges:
        v, details = j.judge_details(prompts, answers)
        verdicts[j.name] = [bool(x) for x in v]
        if any(details):
            evidence[j.name] = list(details)
    return verdicts, evidence


def agreement(verdicts: dict[str, list[bool]]) -> dict:
    """Pairwise agreement of judges over the same answers, keyed `"A vs B"` in the given
    order: `n`, raw `agreement` (share of equal verdicts) and Cohen's `kappa` (None when
    it is undefined: both judges gave one and the same verdict throughout)."""
    from landscape.metrics import cohen_kappa

    out = {}
    for a, b in itertools.combinations(verdicts, 2):
        va, vb = verdicts[a], verdicts[b]
        if len(va) != len(vb):
            raise LandscapeError(
                f"judges {a} and {b} gave {len(va)} and {len(vb)} verdicts: cannot compare"
            )
        n = len(va)
        k = cohen_kappa(va, vb)
        out[f"{a} vs {b}"] = {
            "n": n,
            "agreement": sum(bool(x) == bool(y) for x, y in zip(va, vb)) / n if n else None,
            "kappa": None if math.isnan(k) else k,
        }
    return out


__all__ = [
    "JUDGES",
    "MODEL_JUDGES",
    "Judge",
    "agreement",
    "get_judge",
    "get_judges",
    "judge_answers",
    "parse_specs",
]
