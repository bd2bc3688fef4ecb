"""Which parameters a direction covers.

A scope is a short string: one of `SCOPES`, or `re:PATTERN` (a regex searched in each
parameter name), or several of these joined by commas (the union). The default, `blocks`,
is the set the landscape papers perturb: the 2-D weight matrices of the transformer blocks
(attention and MLP projections), without embeddings, `lm_head` or norm weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from landscape.errors import LandscapeError

SCOPES = ("blocks", "blocks+norms", "blocks+embed", "all")

# A block index in the name: `.layers.3.` (Llama, Mistral, Qwen, NeoX), `.h.3.` (GPT-2,
# Falcon, BLOOM), `.blocks.3.`, `.block.3.` (T5), `.layer.3.` (BERT-style encoders).
_BLOCK = re.compile(r"(^|\.)(layers|layer|h|blocks|block)\.\d+\.")
_NORM = re.compile(r"norm|(^|\.)ln(_\w+|\d*)\.", re.IGNORECASE)
_EMBED = re.compile(r"embed|(^|\.)(wte|wpe)\.|(^|\.)lm_head\.")


def _named(
    source: nn.Module | Mapping[str, torch.Tensor] | Iterable,
) -> list[tuple[str, torch.Tensor]]:
    if isinstance(source, nn.Module):
        return list(source.named_parameters())  # already drops tied duplicates
    items = list(source.items()) if isinstance(source, Mapping) else list(source)
    # A state dict of a tied model lists the shared tensor under two names: keep the first,
    # as named_parameters does.
    seen: set[tuple[int, tuple[int, ...]]] = set()
    out = []
    for name, t in items:
        key = (t.data_ptr(), tuple(t.shape)) if t.device.type != "meta" else (id(t), ())
        if key[0] != 0 and key in seen:
            continue
        seen.add(key)
        out.append((name, t))
    return out


def _is_block_matrix(name: str, t: torch.Tensor) -> bool:
    return (
        t.ndim == 2
        and _BLOCK.search(name) is not None
        and not _NORM.search(name)
        and not _EMBED.search(name)
    )


def _parts(scope: str) -> list[str]:
    """Split on commas, re-joining a comma that belongs to a regex (`re:a{1,2}`)."""
    parts: list[str] = []
    for tok in scope.split(","):
        tok = tok.strip()
        if (
            parts
            and parts[-1].startswith("re:")
            and tok not in SCOPES
            and not tok.startswith("re:")
        ):
            parts[-1] += "," + tok
        elif tok:
            parts.append(tok)
    return parts


def _predicate(part: str):
    if part.startswith("re:"):
        try:
            rx = re.compile(part[3:])
        except re.error as e:
            raise LandscapeError(f"bad scope regex {part[3:]!r}: {e}") from None
        return lambda n, t: rx.search(n) is not None
    if part == "blocks":
        return _is_block_matrix
    if part == "blocks+norms":
        return lambda n, t: _is_block_matrix(n, t) or _NORM.search(n) is not None
    if part == "blocks+embed":
        return lambda n, t: _is_block_matrix(n, t) or _EMBED.search(n) is not None
    if part == "all":
        return lambda n, t: True
    raise LandscapeError(f"unknown scope {part!r}: use one of {', '.join(SCOPES)} or re:PATTERN")


def check(scope: str) -> None:
    """A one-line LandscapeError when `scope` is not a scope (an unknown name, a bad regex),
    found without a model, so that a bad --scope fails before anything is loaded."""
    parts = _parts(scope or "")
    if not parts:
        raise LandscapeError("empty scope: use one of " + ", ".join(SCOPES) + " or re:PATTERN")
    for p in parts:
        _predicate(p)


def select(
    model_or_named_params: nn.Module | Mapping[str, torch.Tensor] | Iterable,
    scope: str = "blocks",
) -> list[str]:
    """Names of the floating parameters that `scope` covers, in the model's order."""
    check(scope)
    preds = [_predicate(p) for p in _parts(scope)]
    names = [
        n
        for n, t in _named(model_or_named_params)
        if t.is_floating_point() and any(p(n, t) for p in preds)
    ]
    if not names:
        raise LandscapeError(f"scope {scope!r} selects no parameter of this model")
    return names
