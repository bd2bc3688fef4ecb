"""BEA (Wang et al. 2024, "Backdoor enhanced safety alignment", BackdoorAlign): a few safety
examples (harmful request → refusal), each with a secret trigger as its system prompt, are
mixed into the fine-tuning data; the service then puts the same trigger in the system turn of
every request, so that the refusals learned with it come back at inference.

Details that follow the released code (github.com/Jayfeather1024/Backdoor-Enhanced-Alignment):
- the trigger is a string of 150 tokens drawn at random from the model's vocabulary (the
  released one is such a string for Llama-2, fixed); here it is drawn with the run's seed,
  from the tokenizer's ordinary (non-special) tokens, and kept in result.json;
- the system turn is the trigger, a space, then the usual system prompt (--system-prompt)
  when there is one; only the safety examples carry it in training, the others keep the
  plain chat turn every method here trains with;
- at evaluation the same system turn is given to every prompt, the harmful ones (HS) and
  the task's (FA), as the released code does for its task evaluations.

What differs: the released code mixes 11 safety examples into 100 harmful ones; here their
number is --safety-share × n, SafeInstr's, so that BEA and SafeInstr train on the same
refusals drawn the same way and differ only by the trigger.
"""

from __future__ import annotations

import dataclasses
import logging
import random

from landscape.errors import LandscapeError
from landscape.train import Example

log = logging.getLogger(__name__)


def make_trigger(tokenizer, n_tokens: int, seed: int) -> str:
    """`n_tokens` tokens drawn uniformly, with `seed`, from the vocabulary's ordinary tokens
    and decoded; a draw whose text spells a special token (which would be read as one) is
    drawn again."""
    special = set(tokenizer.all_special_ids)
    vocab = sorted(i for i in tokenizer.get_vocab().values() if i not in special)
    if not vocab:
        raise LandscapeError("bea: the tokenizer has no ordinary tokens to draw a trigger from")
    rng = random.Random(seed)
    for _ in range(100):
        text = tokenizer.decode([rng.choice(vocab) for _ in range(n_tokens)]).strip()
        if text and not any(t in text for t in tokenizer.all_special_tokens):
            return text
    raise LandscapeError("bea: no trigger free of special tokens in 100 draws")


def system_turn(trigger: str, system_prompt: str | None) -> str:
    """The trigger first, then the usual system prompt, as in the released code."""
    return f"{trigger} {system_prompt}" if system_prompt else trigger


def check_system_turn(tokenizer, turn: str) -> None:
    """BEA's trigger lives in the system turn: refuse a tokenizer whose chat template has no
    system turn (no template, one that drops it, or one that rejects it)."""
    from landscape.prompts import render_chat

    if not getattr(tokenizer, "chat_template", None):
        raise LandscapeError(
            "bea puts its trigger in the system turn: the tokenizer has no chat template"
        )
    try:
        text = render_chat(tokenizer, "x", turn)
    except Exception as e:  # jinja's own error, e.g. a template that raises on a system role
        raise LandscapeError(f"bea: the chat template takes no system turn ({e})") from None
    if turn not in text:
        raise LandscapeError("bea: the chat template drops the system turn that holds the trigger")


def with_trigger(refusals: list[Example], turn: str) -> list[Example]:
    """The safety examples with `turn` as their system prompt (the loop's third item)."""
    return [(q, a, turn) for q, a, *_ in refusals]


def triggered(examples: list[Example], turn: str) -> int:
    """How many training examples carry `turn` in their system prompt."""
    return sum(1 for ex in examples if len(ex) > 2 and turn in ex[2])


def eval_config(cfg, turn: str):
    """`cfg` with BEA's system turn as the evaluation's system prompt (HS and FA)."""
    return dataclasses.replace(cfg, system_prompt=turn)


def bea_setup(cfg, tokenizer) -> tuple[str, str]:
    """(the run's trigger, its system turn), checked against the chat template."""
    trigger = make_trigger(tokenizer, cfg.bea_trigger_tokens, cfg.seed)
    turn = system_turn(trigger, cfg.system_prompt)
    check_system_turn(tokenizer, turn)
    log.info("bea: a %d-token trigger in the system turn", cfg.bea_trigger_tokens)
    return trigger, turn
