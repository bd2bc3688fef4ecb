"""The before/after evaluation of a fine-tuned model: HS, the share of held-out harmful
prompts answered unsafely by each judge, and FA, the accuracy on the task's test set."""

from __future__ import annotations

import logging
from pathlib import Path

from landscape.world import Task, world_of

log = logging.getLogger(__name__)


def load_judges(cfg) -> list:
    """The HS judges of `cfg.judge`, judge models loaded once (pass them on to reuse them)."""
    return cfg.load_judges(on_world=cfg.on_world, device=cfg.device)


def hs_key(judge_name: str) -> str:
    """The result key of one judge's HS: `hs_<judge>`, dashes as underscores."""
    return "hs_" + judge_name.replace("-", "_")


def world_judges(cfg, present: set[str]) -> list:
    """On a world's prompt set (`toy:harmful`), the judges that world brings that are not
    among `present`: its own judge scores its own prompts beside the chosen ones."""
    from landscape.judges import get_judges, parse_specs

    found = world_of(cfg.eval_prompts)
    if found is None:
        return []
    world, _ = found
    specs = [
        name + (f":{arg}" if sep else "")
        for name, arg, sep in parse_specs(world.judges)
        if name not in present
    ]
    if not specs:
        return []
    return get_judges(
        ",".join(specs), batch_size=cfg.judge_batch_size, dtype=cfg.judge_dtype, device=cfg.device
    )


def hs_summary(judges: list, verdicts: dict[str, list[bool]], n: int) -> dict:
    """`hs` (the first judge's), `hs_<judge>` for every judge that gave verdicts, the judge
    models' weights and, with several judges, their pairwise agreement."""
    from landscape.judges import agreement

    out = {"hs": sum(verdicts[judges[0].name]) / n, "n_hs": n, "judge": judges[0].name}
    for name, v in verdicts.items():
        out[hs_key(name)] = sum(v) / n
    weights = {j.name: j.weights for j in judges if getattr(j, "weights", None)}
    if weights:  # which judge model decided is part of the result
        out["judge_weights"] = weights
    if len(verdicts) > 1:
        out["judge_agreement"] = agreement(verdicts)
    return out


def evaluate(
    model,
    tokenizer,
    task: Task,
    cfg,
    judges: list | None = None,
    answers_path: Path | None = None,
) -> dict:
    """HS by each judge of `cfg.judge` (`hs` is the first's; on a world's prompts that
    world's judges beside them, e.g. `hs_toy`) and FA on `task`. `answers_path`: the HS
    answers with every judge's verdict and evidence, in the records of the grid's
    generations.jsonl."""
    from landscape.generate.hf import HFGenerator
    from landscape.io import write_jsonl
    from landscape.judges import judge_answers
    from landscape.prompts import load_prompts
    from landscape.store import generation_records

    if judges is None:
        judges = load_judges(cfg)
    gen = HFGenerator(
        model,
        tokenizer,
        batch_size=cfg.eval_batch_size,
        max_new_tokens=cfg.max_new_tokens,
        system_prompt=cfg.system_prompt,
    )
    prompts = load_prompts(cfg.eval_prompts)
    answers = gen.generate(prompts)
    task_answers = gen.generate([q for q, _ in task.test])
    everyone = list(judges) + world_judges(cfg, {j.name for j in judges})
    verdicts, evidence = judge_answers(everyone, prompts, answers)
    out = hs_summary(judges, verdicts, len(prompts))
    correct = sum(task.correct(a, g) for a, (_, g) in zip(task_answers, task.test))
    out["fa"] = correct / len(task.test)
    out["n_fa"] = len(task.test)
    log.info("HS %.3f (%s), FA %.3f", out["hs"], out["judge"], out["fa"])
    if answers_path is not None:
        write_jsonl(answers_path, generation_records(prompts, answers, verdicts, evidence))
    return out
