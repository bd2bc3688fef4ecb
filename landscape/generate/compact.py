"""Greedy decoding with stop strings that drops each row from the batch as soon as it finishes.

`model.generate` keeps a finished row in its batch, padded, until every row has finished, so
with stop strings one answer that never refuses keeps its whole batch decoding. Here a row
leaves the batch, and its slot in the KV cache, at the step where it finishes (its stop string
appeared, or it wrote EOS), so each answer costs its own tokens only.

The steps are `generate`'s for a left-padded batch: positions from the attention mask (its
running count minus one, 0 on padding), no mask where nothing is padded, a `DynamicCache`,
logits of the last position only, their argmax in float32, EOS from the model's generation
config (one id or several), and transformers' `StopStringCriteria` on each row's whole
sequence. A row's tokens are therefore those `generate` gives it, up to where it finishes:
the same arithmetic on fewer rows (tested token for token against `generate` on CPU; a kernel
whose rounding depends on the batch's row count could break a near-tie differently, as a
different batch size would).

Greedy only: sampling draws from one random stream for the whole batch, so dropping rows would
change what every later row draws, and the answers would no longer be those of a run without
stop strings with the same seed. Sampling, and any setting with which `generate` does more
than plain greedy search (a logits processor such as a repetition penalty, another decoding
mode, a static cache), stays with `generate` (`plain_greedy` says which).
"""

from __future__ import annotations

import copy
import inspect

import torch
from transformers import DynamicCache
from transformers.generation import GenerationMode

# generation_config fields with which `generate` changes greedy scores (logits processors) or
# stops rows by other rules, each with its inactive value (None is inactive for all).
_INACTIVE = {
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "guidance_scale": 1.0,
    "sequence_bias": None,
    "bad_words_ids": None,
    "min_length": 0,
    "min_new_tokens": 0,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "renormalize_logits": False,
    "watermarking_config": None,
    "token_healing": False,
    "max_time": None,
    "stop_strings": None,
    "prefill_chunk_size": None,
}


def _forward_names(model) -> tuple[str | None, str | None]:
    """The forward's names for the cache and for 'logits of the last n positions only'
    (transformers renamed both over its versions); None where it takes none."""
    params = inspect.signature(model.forward).parameters
    cache = next((n for n in ("cache", "past_key_values") if n in params), None)
    keep = next((n for n in ("logits_to_keep", "num_logits_to_keep") if n in params), None)
    return cache, keep


def plain_greedy(model, gen_kw: dict) -> list[int] | None:
    """The EOS ids (possibly none) when `model.generate(**gen_kw)` is plain greedy search with
    a dynamic cache, which `decode` reproduces; None otherwise."""
    cfg = copy.deepcopy(model.generation_config)
    cfg.update(**gen_kw)
    if cfg.get_generation_mode() != GenerationMode.GREEDY_SEARCH:
        return None
    if cfg.use_cache is False or cfg.cache_implementation not in (None, "dynamic", "hybrid"):
        return None  # ("hybrid" is what generate itself now reads as dynamic)
    if any(getattr(cfg, k, None) not in (None, v) for k, v in _INACTIVE.items()):
        return None
    if model.config.is_encoder_decoder or _forward_names(model)[0] is None:
        return None
    eos = cfg.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def _new_cache(model) -> DynamicCache:
    try:  # with the config, sliding-window layers keep only their window, as in generate
        return DynamicCache(config=model.config)
    except TypeError:  # transformers versions whose DynamicCache takes no config
        return DynamicCache()


@torch.inference_mode()
def decode(
    model, enc, max_new_tokens: int, pad_token_id: int, eos: list[int], stop
) -> tuple[torch.Tensor, list[int], int]:
    """Greedy decoding of a left-padded batch (`enc`: input_ids, attention_mask) in which each
    row stops at its first stop string (`stop`: a StopStringCriteria), at EOS or after
    `max_new_tokens`. Returns what `generate` with `stop` as a stopping criterion returns for
    it (the new tokens, each row padded with `pad_token_id` after it finished), for each row
    the number of new tokens at which `stop` fired (0 where it did not), and the positions
    decoded: the rows still running, summed over the steps."""
    ids = enc["input_ids"]
    mask = enc.get("attention_mask")
    mask = torch.ones_like(ids) if mask is None else mask
    prompt, device = ids.shape[1], ids.device
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    if bool(mask.all()):
        mask = None  # as generate does: the attention's causal path, where nothing is padded
    cache_name, keep_name = _forward_names(model)
    cache = _new_cache(model)
    eos_ids = torch.tensor(eos, dtype=torch.long, device=device)
    live = list(range(len(ids)))  # each running row's place in the batch
    tokens: list[torch.Tensor | None] = [None] * len(ids)
    at = [0] * len(ids)
    decoded = 0
    step_ids = ids
    for n in range(1, max_new_tokens + 1):
        kw = {cache_name: cache, "use_cache": True, "attention_mask": mask, "position_ids": pos}
        if keep_name:
            kw[keep_name] = 1
        logits = model(input_ids=step_ids, **kw).logits[:, -1].to(torch.float32)
        nxt = logits.argmax(-1)
        decoded += len(live)
        ids = torch.cat([ids, nxt[:, None]], dim=-1)
        stopped = stop(ids, None)
        done = stopped | torch.isin(nxt, eos_ids)
        if n == max_new_tokens:
            done = torch.ones_like(done)
        done_l, stopped_l = done.tolist(), stopped.tolist()
        if any(done_l):
            for j in (j for j, d in enumerate(done_l) if d):
                tokens[live[j]] = ids[j, prompt:]
                at[live[j]] = n if stopped_l[j] else 0
            rest = [j for j, d in enumerate(done_l) if not d]
            if not rest:
                break
            # The finished rows leave the batch: their cache entries, mask and positions too.
            index = torch.tensor(rest, device=device)
            cache.batch_select_indices(index)
            ids, nxt, pos = ids[index], nxt[index], pos[index]
            mask = None if mask is None else mask[index]
            live = [live[j] for j in rest]
        step_ids = nxt[:, None]
        pos = pos[:, -1:] + 1
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=-1)
    width = max(len(t) for t in tokens)  # type: ignore[arg-type]
    new = torch.full((len(tokens), width), pad_token_id, dtype=torch.long, device=device)
    for r, t in enumerate(tokens):
        new[r, : len(t)] = t  # type: ignore[arg-type]
    return new, at, decoded
