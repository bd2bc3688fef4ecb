"""Batched generation with transformers (the default backend).

Without stop strings, and for sampling, batches go through `model.generate`. Greedy decoding
with stop strings goes through `compact.stream`, a loop of the model's forward that drops each
row from the batch (and its KV cache) as soon as its stop string appears or it ends, and lets
the next prompts take the freed places, so that one answer that does not refuse no longer
keeps its whole batch decoding and the batch stays full; its answers are `generate`'s, token
for token (see compact.py). Sampling stays with `generate` even with stop
strings: its rows share one random stream, which dropping rows would change. There,
transformers' own `StopStringCriteria` ends each row as soon as one of them appears (a finished
row is padded until the whole batch is done, and the batch stops when every row has); a thin
wrapper remembers at which token each row stopped, so that its answer is decoded from there
and not from the padding."""

from __future__ import annotations

import logging

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from landscape.generate import compact
from landscape.generate.base import Generator, batch_seed, cut_at_stop
from landscape.prompts import render_chat

log = logging.getLogger(__name__)

SMALL_MODEL = 20_000_000  # parameters; below this, CPU decoding runs on one thread


class HFGenerator(Generator):
    """Left-padded batches, greedy when temperature is 0, else sampling; through
    `model.generate`, or `compact.stream` for greedy decoding with stop strings."""

    def __init__(self, model, tokenizer, **options):
        """`options`: the Generator's (batch_size, max_new_tokens, temperature, top_p,
        system_prompt)."""
        super().__init__(model, tokenizer, **options)
        # Decoding a tiny model on CPU is a long chain of tiny matmuls: each extra thread only
        # adds wake-up latency (several times slower with 2 threads; see bench/).
        self._one_thread = (
            next(model.parameters()).device.type == "cpu"
            and sum(p.numel() for p in model.parameters()) < SMALL_MODEL
        )
        if tokenizer.pad_token is None:
            # Padding is masked out, so eos serves; load_model already does this for its tokenizers.
            tokenizer.pad_token = tokenizer.eos_token
        # Positions (see Generator): `generate` decodes every row of a batch until its last row
        # finishes, so a row's are its batch's; `compact.stream` decodes only the running rows.
        # And the model's forward passes (prefills and steps).
        self.passes = 0

    def _generation_kwargs(self) -> dict:
        kw = {"max_new_tokens": self.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if self.temperature == 0:
            return {**kw, "do_sample": False}
        # top_k=0 so that a model's stored top_k does not silently narrow the sampling.
        return {
            **kw,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": 0,
        }

    def generate_stopped(
        self, prompts: list[str], seed: int = 0, stop: bool = True
    ) -> tuple[list[str], list[bool]]:
        if not prompts:
            return [], []
        stop = stop and bool(self.stop_at)
        if not self._one_thread:
            return self._generate(prompts, seed, stop)
        # torch's thread count is process-wide: the caller's is put back however this ends.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._generate(prompts, seed, stop)
        finally:
            torch.set_num_threads(threads)

    def _stop_criteria(self):
        """transformers' StopStringCriteria for `stop_at`, built once: it preprocesses the
        whole vocabulary."""
        if getattr(self, "_stops", None) is None:
            self._stops = StopStringCriteria(self.tokenizer, list(self.stop_at))
        return self._stops

    def _run(self, enc, gen_kw: dict, seed: int, batch: int, stop: bool):
        """One batch through `generate`: the new tokens and, with `stop`, the number of new
        tokens at which each row's stop string appeared (0 for a row that did not stop)."""
        devices = [enc["input_ids"].device] if enc["input_ids"].device.type == "cuda" else []
        kw = dict(gen_kw)
        first = None
        if stop:
            first = _FirstStop(self._stop_criteria(), enc["input_ids"].shape[1])
            kw["stopping_criteria"] = StoppingCriteriaList([first])
        # fork_rng: seed per batch without disturbing the caller's random state.
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(batch_seed(seed, batch))
            out = self.model.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1] :]
        self.positions += new.numel()
        self.passes += new.shape[1]  # the prefill gives the first new token, a step each other
        at = first.stops(len(new)) if first is not None else [0] * len(new)
        return new, at

    def _generate(self, prompts: list[str], seed: int, stop: bool) -> tuple[list[str], list[bool]]:
        tok = self.tokenizer
        texts = [render_chat(tok, p, self.system_prompt) for p in prompts]
        # A chat template writes its own BOS; adding special tokens again would double it.
        add_special = not getattr(tok, "chat_template", None)
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=add_special)["input_ids"]]
        # Longest first, ties in input order: batches of similar length waste less padding.
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        device = next(self.model.parameters()).device
        gen_kw = self._generation_kwargs()

        def encode(idx: list[int]):
            return tok(
                [texts[order[i]] for i in idx],
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=add_special,
            ).to(device)

        chunks = [
            list(range(start, min(len(order), start + self.batch_size)))
            for start in range(0, len(order), self.batch_size)
        ]
        eos = compact.plain_greedy(self.model, gen_kw) if stop and self.temperature == 0 else None
        streamed = None
        if eos is not None:
            # Greedy with stop strings: each row leaves the batch when it finishes and the next
            # prompts take the freed places. Sampling never gets here (its rows share one
            # random stream, which leaving and joining would change).
            out = compact.stream(
                self.model, encode, len(order), self.batch_size, self.max_new_tokens,
                tok.pad_token_id, eos, self._stop_criteria(),
            )  # fmt: skip
            self.positions += out.positions
            self.passes += out.passes
            streamed = out.tokens, out.at  # each row's tokens end where it finished
        answers: list[str | None] = [None] * len(texts)
        stopped = [False] * len(texts)
        self.lengths = [0] * len(texts)
        for b, chunk in enumerate(chunks):
            idx = [order[i] for i in chunk]
            if streamed is None:
                enc = encode(chunk)
                log.debug("batch %d: %d prompts, %d tokens", b, len(idx), enc["input_ids"].shape[1])
                new, at = self._run(enc, gen_kw, seed, b, stop)
                rows = [new[j, :n] if n else new[j] for j, n in enumerate(at)]
            else:
                rows, at = [streamed[0][i] for i in chunk], [streamed[1][i] for i in chunk]
            for i, row in zip(idx, rows):
                self.lengths[i] = len(row) if streamed is not None else len(new[0])
            decoded = tok.batch_decode(rows, skip_special_tokens=True)
            if stop and any(
                n and cut_at_stop(d, self.stop_at) is None for n, d in zip(at, decoded)
            ):
                # A row stopped where its decoded text holds no stop string (the tokenizer's
                # pieces and its decoding disagree, or the match reached into the prompt): its
                # batch is generated again in full, with the same seed, which gives exactly
                # the answers of a run without stop strings.
                log.debug("batch %d: a stop without its string; generated again in full", b)
                full, _ = self._run(encode(chunk), gen_kw, seed, b, stop=False)
                decoded = tok.batch_decode(full, skip_special_tokens=True)
            texts_b, stopped_b = self.finish(decoded, stop)
            for i, text, cut in zip(idx, texts_b, stopped_b, strict=True):
                answers[i], stopped[i] = text, cut
        return answers, stopped  # type: ignore[return-value]


class _FirstStop(StoppingCriteria):
    """A stopping criterion around transformers' StopStringCriteria that remembers, per row,
    how many new tokens there were when its stop string first appeared."""

    def __init__(self, inner, prompt_len: int):
        self.inner, self.prompt_len, self.at = inner, prompt_len, None

    def __call__(self, input_ids: torch.LongTensor, scores, **kw) -> torch.BoolTensor:
        done = self.inner(input_ids, scores, **kw)
        if self.at is None:
            self.at = torch.zeros(done.shape[0], dtype=torch.long, device=done.device)
        n = input_ids.shape[1] - self.prompt_len
        self.at = torch.where(done & (self.at == 0), n, self.at)
        return done

    def stops(self, rows: int) -> list[int]:
        return [0] * rows if self.at is None else [int(x) for x in self.at.tolist()]
