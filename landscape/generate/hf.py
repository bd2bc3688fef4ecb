"""Batched generation with transformers' `model.generate` (the default backend)."""

from __future__ import annotations

import logging

import torch

from landscape.generate.base import Generator, batch_seed
from landscape.prompts import render_chat

log = logging.getLogger(__name__)

SMALL_MODEL = 20_000_000  # parameters; below this, CPU decoding runs on one thread


class HFGenerator(Generator):
    """Left-padded batches through `model.generate`; greedy when temperature is 0, else sampling."""

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

    def generate(self, prompts: list[str], seed: int = 0) -> list[str]:
        if not prompts:
            return []
        if not self._one_thread:
            return self._generate(prompts, seed)
        # torch's thread count is process-wide: the caller's is put back however this ends.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._generate(prompts, seed)
        finally:
            torch.set_num_threads(threads)

    def _generate(self, prompts: list[str], seed: int) -> list[str]:
        tok = self.tokenizer
        texts = [render_chat(tok, p, self.system_prompt) for p in prompts]
        # A chat template writes its own BOS; adding special tokens again would double it.
        add_special = not getattr(tok, "chat_template", None)
        lengths = [len(ids) for ids in tok(texts, add_special_tokens=add_special)["input_ids"]]
        # Longest first, ties in input order: batches of similar length waste less padding.
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        device = next(self.model.parameters()).device
        gen_kw = self._generation_kwargs()
        answers: list[str | None] = [None] * len(texts)
        devices = [device] if device.type == "cuda" else []
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            idx = order[start : start + self.batch_size]
            enc = tok(
                [texts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                padding_side="left",
                add_special_tokens=add_special,
            ).to(device)
            log.debug("batch %d: %d prompts, %d tokens", b, len(idx), enc["input_ids"].shape[1])
            # fork_rng: seed per batch without disturbing the caller's random state.
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(batch_seed(seed, b))
                out = self.model.generate(**enc, **gen_kw)
            new = out[:, enc["input_ids"].shape[1] :]
            for i, text in zip(idx, tok.batch_decode(new, skip_special_tokens=True), strict=True):
                answers[i] = text.strip()
        return answers  # type: ignore[return-value]
