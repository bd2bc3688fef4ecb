"""Greedy decoding with stop strings that drops each row from the batch as soon as it finishes
and lets the next prompts take its place.

`model.generate` keeps a finished row in its batch, padded, until every row has finished, so
with stop strings one answer that never refuses keeps its whole batch decoding. Here a row
leaves the batch, and its slot in the KV cache, at the step where it finishes (its stop string
appeared, or it wrote EOS), so each answer costs its own tokens only. Dropping rows alone saves
little time where a decoding step costs about the same for 4 rows as for 16 (a CPU, a small
model): the batch still runs as long as its longest answer. So the freed places are filled:
once a quarter of the slots is free, the next prompts are prefilled on their own and join the
running batch, the shorter side padded on the left (masked positions, zero keys and values),
as `generate` pads prompts of different lengths (continuous batching).

The steps are `generate`'s for a left-padded batch: positions from the attention mask (its
running count minus one, 0 on padding), no mask where nothing is padded, a `DynamicCache`,
logits of the last position only, their argmax in float32, EOS from the model's generation
config (one id or several), and transformers' `StopStringCriteria` on each row's whole
sequence. A row's tokens are therefore those `generate` gives it, up to where it finishes:
the same arithmetic on other rows and more padding (tested token for token against `generate`
on CPU; a kernel whose rounding depends on the batch's rows could break a near-tie differently,
as a different batch size would).

Greedy only: sampling draws from one random stream for the whole batch, so dropping rows would
change what every later row draws, and the answers would no longer be those of a run without
stop strings with the same seed. Sampling, and any setting with which `generate` does more
than plain greedy search (a logits processor such as a repetition penalty, another decoding
mode, a static cache), stays with `generate` (`plain_greedy` says which).
"""

from __future__ import annotations

import copy
import inspect
from typing import NamedTuple

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
    a dynamic cache, which `stream` reproduces; None otherwise."""
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


def _layers(cache) -> list | None:
    """The cache's per-layer objects with `keys` and `values` of shape [batch, heads, length,
    dim] when every layer is a plain growing one (what merging and trimming need); None where
    some layer keeps a window, a fixed size or a recurrent state."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(x).__name__ != "DynamicLayer" for x in layers):
        return None
    return layers


def _pad_left(x: torch.Tensor, width: int, dim: int, value=0) -> torch.Tensor:
    """`x` with `width` entries of `value` put in front along `dim`."""
    if width == 0:
        return x
    shape = list(x.shape)
    shape[dim] = width
    return torch.cat([x.new_full(shape, value), x], dim=dim)


class _Batch:
    """The rows decoding together: their tokens so far (prompt, left padding, the new ones;
    the last is the one the cache has not seen yet), the matching attention mask, the position
    of that last token, the KV cache and, per row, its prompt's index and its new tokens."""

    def __init__(self, ids, mask, pos, cache, rows):
        self.ids, self.mask, self.pos, self.cache = ids, mask, pos, cache
        self.rows, self.new = list(rows), [1] * len(rows)

    def join(self, other: _Batch, pad_token_id: int) -> None:
        """`other`'s rows join this batch: the shorter side is padded on the left (masked
        tokens, zero keys and values) so that both share one cache length."""
        a, b = self.ids.shape[1], other.ids.shape[1]
        w = max(a, b)
        for one, pad in ((self, w - a), (other, w - b)):
            one.ids = _pad_left(one.ids, pad, 1, pad_token_id)
            one.mask = _pad_left(one.mask, pad, 1)
            for layer in _layers(one.cache) or []:
                layer.keys = _pad_left(layer.keys, pad, 2)
                layer.values = _pad_left(layer.values, pad, 2)
        for mine, theirs in zip(_layers(self.cache), _layers(other.cache), strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self.ids = torch.cat([self.ids, other.ids])
        self.mask = torch.cat([self.mask, other.mask])
        self.pos = torch.cat([self.pos, other.pos])
        self.rows += other.rows
        self.new += other.new

    def keep(self, keep: list[int]) -> None:
        """Only the rows at `keep` stay; columns that are padding in every row left go too."""
        index = torch.tensor(keep, device=self.ids.device)
        self.cache.batch_select_indices(index)
        self.ids, self.mask, self.pos = self.ids[index], self.mask[index], self.pos[index]
        self.rows = [self.rows[j] for j in keep]
        self.new = [self.new[j] for j in keep]
        layers = _layers(self.cache)
        lead = int(self.mask.argmax(-1).min())  # the first real token of the earliest row
        if layers is not None and lead:
            self.ids, self.mask = self.ids[:, lead:], self.mask[:, lead:]
            for layer in layers:
                layer.keys, layer.values = layer.keys[:, :, lead:], layer.values[:, :, lead:]


class _Stops:
    """Which rows' sequences end with a stop string: transformers' `StopStringCriteria`, run
    only on the rows whose last token can end one of its strings. The criterion itself answers
    no for every other row (it matches from the sequence's end, and a row whose last token
    ends no string fails its first test), so the answers are its own; asked about every row,
    it costs about a millisecond a step at 32 rows, a sizeable share of a tiny model's step,
    and most steps end no row. Where the criterion's precomputed table is not the one
    this reads (another transformers version), every row is checked."""

    def __init__(self, criteria):
        self.criteria = criteria
        self.can_end = None
        table = getattr(criteria, "embedding_vec", None)
        width = getattr(criteria, "max_valid_positions", None)
        count = getattr(criteria, "num_stop_strings", None)
        if isinstance(table, torch.Tensor) and isinstance(width, int) and isinstance(count, int):
            # Per token: the string positions it can hold, then how many characters of each
            # string's end it can hold (-1 for none, > 0 where it can end it), then its length.
            self.can_end = (table[:, width * count : -1] > 0).any(-1)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self.can_end is None:
            return self.criteria(ids, None)
        self.can_end = self.can_end.to(ids.device)
        # Ids beyond the table (a model's extra ids) match nothing, as the criterion clamps.
        maybe = self.can_end[ids[:, -1].clamp(max=len(self.can_end) - 1)]
        out = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        if bool(maybe.any()):
            rows = maybe.nonzero().squeeze(1)
            out[rows] = self.criteria(ids[rows], None)
        return out


class Streamed(NamedTuple):
    """What `stream` returns: per prompt its new tokens up to where it finished and the number
    of new tokens at which its stop string appeared (0 where none did); the positions decoded
    (running rows, summed over the steps) and the model's forward passes (prefills and steps)."""

    tokens: list
    at: list
    positions: int
    passes: int


def _step(model, names, ids, cache, mask, pos) -> torch.Tensor:
    """One forward: the greedy next token of each row (argmax of the last position's logits
    in float32); the attention mask is left out where nothing is padded, as generate does."""
    cache_name, keep_name = names
    kw = {cache_name: cache, "use_cache": True, "position_ids": pos}
    kw["attention_mask"] = None if bool(mask.all()) else mask
    if keep_name:
        kw[keep_name] = 1
    return model(input_ids=ids, **kw).logits[:, -1].to(torch.float32).argmax(-1)


@torch.inference_mode()
def stream(
    model, encode, count: int, slots: int, max_new_tokens: int, pad_token_id: int, eos, stop
) -> Streamed:
    """Greedy decoding of `count` prompts, at most `slots` rows at a time, each row leaving as
    it finishes (its first stop string, `stop`: a StopStringCriteria; EOS; `max_new_tokens`)
    and prompts joining in order as rows leave: whenever a quarter of the slots is free (or
    nothing is decoding), the next prompts are prefilled (`encode(indices)`: their left-padded
    input_ids and attention_mask on the model's device) and join the batch.

    Where the cache is not made of plain growing layers (sliding windows and the like), no
    prompt joins a running batch: `slots` prompts at a time, each batch running out."""
    names = _forward_names(model)
    eos_ids = torch.tensor(eos, dtype=torch.long)
    stops = _Stops(stop)
    tokens: list[torch.Tensor | None] = [None] * count
    at = [0] * count
    decoded, passes, waiting = 0, 0, 0
    batch: _Batch | None = None
    while batch is not None or waiting < count:
        if batch is not None:  # the running rows' next token
            nxt = _step(model, names, batch.ids[:, -1:], batch.cache, batch.mask, batch.pos)
            passes += 1
            batch.ids = torch.cat([batch.ids, nxt[:, None]], dim=-1)
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(nxt), 1))], dim=-1)
            batch.pos = batch.pos + 1
            batch.new = [n + 1 for n in batch.new]
        free = slots - (0 if batch is None else len(batch.rows))
        joinable = batch is None or _layers(batch.cache) is not None
        if waiting < count and joinable and (batch is None or free >= max(1, slots // 4)):
            idx = list(range(waiting, min(count, waiting + free)))
            waiting += len(idx)
            enc = encode(idx)
            ids = enc["input_ids"]
            mask = enc.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else mask
            pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
            cache = _new_cache(model)
            nxt = _step(model, names, ids, cache, mask, pos)
            passes += 1
            ids = torch.cat([ids, nxt[:, None]], dim=-1)
            mask = torch.cat([mask, mask.new_ones((len(idx), 1))], dim=-1)
            joining = _Batch(ids, mask, pos[:, -1:] + 1, cache, idx)
            if batch is None:
                batch = joining
            else:
                batch.join(joining, pad_token_id)
        decoded += len(batch.rows)
        stopped = stops(batch.ids)
        last = batch.ids[:, -1]
        done = stopped | torch.isin(last, eos_ids.to(last.device))
        done_l, stopped_l = done.tolist(), stopped.tolist()
        rest = []
        for j, row in enumerate(batch.rows):
            n = batch.new[j]
            if done_l[j] or n == max_new_tokens:
                tokens[row] = batch.ids[j, -n:]
                at[row] = n if stopped_l[j] else 0
            else:
                rest.append(j)
        if not rest:
            batch = None
        elif len(rest) < len(batch.rows):
            batch.keep(rest)
    return Streamed(tokens, at, decoded, passes)  # type: ignore[arg-type]
