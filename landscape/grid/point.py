"""One point of the landscape: the prompts answered by the model at θ0 + Σ cᵢ·dᵢ, judged,
and written to the run folder as one point record and its generation records. The dense
grid and the adaptive search both go through here."""

from __future__ import annotations

import time
from dataclasses import dataclass

from landscape import metrics
from landscape.coherence import (
    answer_nll,
    incoherent_without_nll,
    outcome,
    point_outcomes,
    signals,
)
from landscape.grid.context import RunContext
from landscape.judges import judge_answers
from landscape.perturb import perturbed
from landscape.store import generation_records
from landscape.utility import utility_record


@dataclass
class Answers:
    """Answers at one point: which of the run's prompts were asked (`index` into
    `RunContext.asked`), the prompts, the answers, each judge's verdicts and, for judges
    that give it, their evidence."""

    index: list[int]
    prompts: list[str]
    answers: list[str]
    verdicts: dict[str, list[bool]]
    evidence: dict[str, list[dict]]
    coherence: list[dict] | None = None  # per answer: signals and outcome (coherence on)
    stopped: list[bool] | None = None  # per answer: cut at its refusal string (early stopping)
    utility: Benign | None = None  # the utility prompts' answers at the point (utility on)


@dataclass
class Benign:
    """The utility prompts' answers at one point: whether each refused (keyword, on the
    whole answer) and, where the set has references, whether it is right."""

    prompts: list[str]
    answers: list[str]
    refused: list[bool]
    correct: list[bool] | None


def utility_seed(seed: int) -> int:
    # The utility batch draws from its own seeds, not from the first harmful batches'.
    return (seed * 31 + 17) % (2**63)


def at_point(ctx: RunContext, coords: list[float]):
    """The block in which the model is at θ0 + Σ coords·dirs: the in-memory model perturbed
    in place, or, where the model lives only in vLLM's workers, the engine's point."""
    if ctx.model is None:
        return ctx.gen.perturbed(coords)
    return perturbed(ctx.model, dict(zip(ctx.dirs, coords)), theta0=ctx.theta0)


def answer(
    ctx: RunContext, coords: list[float], index: list[int], seed: int, utility: bool = False
) -> Answers:
    """The prompts `index` answered with the model at θ0 + Σ coords·dirs, and judged; with
    `utility` (and a utility set) the utility prompts answered at the same weights too."""
    prompts = [ctx.asked[i] for i in index]
    t0 = time.perf_counter()
    benign = None
    with at_point(ctx, coords):
        ctx.gen.sync()  # a backend holding its own copy of the weights takes the new ones
        t1 = time.perf_counter()
        answers, stopped = ctx.gen.generate_stopped(prompts, seed=seed)
        t2 = time.perf_counter()
        if utility and ctx.utility is not None:
            benign = _benign(ctx, seed)  # timed as utility
        t2u = time.perf_counter()
    t3 = time.perf_counter()
    verdicts, evidence = judge_answers(ctx.judges, prompts, answers)
    t4 = time.perf_counter()
    labels = coherence_of(ctx, prompts, answers, verdicts[ctx.judge], stopped)
    ctx.timing.perturb += (t1 - t0) + (t3 - t2u)
    ctx.timing.generate += t2 - t1
    ctx.timing.judge += t4 - t3
    ctx.timing.coherence += time.perf_counter() - t4
    return Answers(list(index), prompts, answers, verdicts, evidence, labels, stopped, benign)


def _benign(ctx: RunContext, seed: int) -> Benign:
    """The utility prompts (each `--samples` times) answered by the model as it is now, in
    full: early stopping never cuts them, since a refusal of a benign prompt is what they
    count, and the keyword list finds it anywhere in the whole answer."""
    t0 = time.perf_counter()
    u, k = ctx.utility, ctx.cfg.samples
    prompts = [p for p in u.prompts for _ in range(k)]
    answers = ctx.gen.generate(prompts, seed=utility_seed(seed), stop=False)
    refused = [not x for x in ctx.refusal.judge(prompts, answers)]
    correct = None
    if u.graded:
        refs = [r for r in u.references for _ in range(k)]
        correct = [bool(u.grade(a, r)) for a, r in zip(answers, refs)]
    ctx.timing.utility += time.perf_counter() - t0
    return Benign(prompts, answers, refused, correct)


def answer_utility(ctx: RunContext, coords: list[float], seed: int) -> Benign | None:
    """The utility prompts answered at θ0 + Σ coords·dirs on their own (the search, whose
    point is decided before it is recorded); None with no utility set."""
    if ctx.utility is None:
        return None
    with at_point(ctx, coords):
        ctx.gen.sync()
        return _benign(ctx, seed)


def coherence_of(
    ctx: RunContext,
    prompts: list[str],
    answers: list[str],
    unsafe: list[bool],
    stopped: list[bool] | None = None,
) -> list[dict] | None:
    """Each answer's coherence signals and outcome, scored by the model after it has been
    restored to θ0 (so the NLL is the unperturbed model's); None with coherence off. An
    answer cut at its refusal string is held to the thresholds of cut answers. An answer
    incoherent whatever its NLL is not scored (`nll` None, landscape.coherence)."""
    if ctx.calibration is None:
        return None
    cuts = stopped or [False] * len(answers)
    # Only answers whose outcome their NLL can still change are scored (the forward pass is
    # the cost): near-empty and over-repetitive ones are incoherent whatever it is.
    need = [
        i
        for i, (a, cut) in enumerate(zip(answers, cuts))
        if not incoherent_without_nll(signals(a, None), ctx.calibration, cut)
    ]
    nll = answer_nll(
        ctx.model,
        ctx.gen.tokenizer,
        [prompts[i] for i in need],
        [answers[i] for i in need],
        batch_size=ctx.cfg.batch_size,
        system_prompt=ctx.cfg.system_prompt,
        prompt_ids=ctx.prompt_ids,
    )
    scored = dict(zip(need, nll))
    out = []
    for i, (a, u, cut) in enumerate(zip(answers, unsafe, cuts)):
        sig = signals(a, scored.get(i))
        out.append({**sig, "outcome": outcome(sig, ctx.calibration, u, cut)})
    return out


def joined(parts: list[Answers]) -> Answers:
    """Several batches at one point as one (the search answers a point batch by batch). A
    judge that gave evidence in some batches only gets empty evidence in the others."""
    names = list(parts[0].verdicts) if parts else []
    said = [n for n in names if any(n in p.evidence for p in parts)]
    scored = bool(parts) and all(p.coherence is not None for p in parts)
    cut = bool(parts) and all(p.stopped is not None for p in parts)
    return Answers(
        [i for p in parts for i in p.index],
        [x for p in parts for x in p.prompts],
        [x for p in parts for x in p.answers],
        {n: [v for p in parts for v in p.verdicts[n]] for n in names},
        {n: [e for p in parts for e in p.evidence.get(n, [{}] * len(p.answers))] for n in said},
        [c for p in parts for c in p.coherence] if scored else None,
        [x for p in parts for x in p.stopped] if cut else None,
    )


def point_record(
    ctx: RunContext, key, coords: list[float], ans: Answers, unsafe: bool | None = None
) -> dict:
    """The line of points.jsonl: grid `key`, `coords`, the ASR by the first judge with its
    Wilson interval, every judge's ASR, and (for a search point) its decision."""
    record = {
        "key": [int(k) for k in key],
        "coords": coords,
        **metrics.asr(ans.verdicts[ctx.judge]),
        "judges": {n: metrics.asr(v)["asr"] for n, v in ans.verdicts.items()},
    }
    if ans.coherence is not None:
        record["outcomes"] = point_outcomes(
            [c["outcome"] for c in ans.coherence], ans.verdicts[ctx.judge]
        )
    if ans.utility is not None:
        record["utility"] = utility_record(ans.utility.refused, ans.utility.correct)
    if unsafe is not None:
        record["unsafe"] = unsafe
    return record


def record_point(
    ctx: RunContext, key, coords: list[float], ans: Answers, unsafe: bool | None = None
) -> None:
    """Append the point's generations and then its record (which marks it done)."""
    generations = generation_records(
        ans.prompts,
        ans.answers,
        ans.verdicts,
        ans.evidence,
        key=key,
        samples=ctx.cfg.samples,
        index=ans.index,
        coherence=ans.coherence,
        stopped=ans.stopped,
    )
    if ans.utility is not None:
        generations += utility_records(ans.utility, key, ctx.cfg.samples)
    ctx.store.append_point(point_record(ctx, key, coords, ans, unsafe), generations)
    ctx.timing.points += 1


def utility_records(b: Benign, key, samples: int) -> list[dict]:
    """The utility answers' lines of generations.jsonl, after the point's harmful ones:
    `"set": "utility"`, the prompt, sample and answer, `refused` and, with references,
    `correct` (no `unsafe`: a benign answer is not judged for harm)."""
    out = []
    for i, (p, a, r) in enumerate(zip(b.prompts, b.answers, b.refused, strict=True)):
        rec = {"key": [int(k) for k in key], "set": "utility", "prompt": p, "sample": i % samples}
        rec |= {"answer": a, "refused": bool(r)}
        if b.correct is not None:
            rec["correct"] = b.correct[i]
        out.append(rec)
    return out
