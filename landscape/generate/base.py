"""The Generator interface: answers to raw user prompts, in order, optionally cut at stop
strings (early stopping at refusals)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from landscape.errors import LandscapeError


def batch_seed(seed: int, batch: int) -> int:
    # A fixed mix of (seed, batch index): the same batch of the same call always draws the same.
    return (seed * 1_000_003 + batch) % (2**63)


def cut_at_stop(text: str, stops: Sequence[str]) -> str | None:
    """`text` up to and including the first stop string to end in it, stripped as every
    answer is; None when none occurs.

    The cut is a function of the text alone, so every backend stores the same answer
    wherever its library happened to stop. A cut whose stripping takes the end off its stop
    string (one ending in whitespace) is skipped for the next one: a stored answer always
    holds a stop string, and, being a prefix of the whole answer stripped, holds it there too.
    """
    ends = sorted({i + len(s) for s in stops if (i := text.find(s)) >= 0})
    for end in ends:
        cut = text[:end].strip()
        if any(s in cut for s in stops):
            return cut
    return None


class Generator:
    """Turn raw user prompts into answers; the generator applies the chat template itself.

    The constructor checks and keeps what every backend takes: the model and tokenizer it
    answers with, the batch size, the answer length, the sampling settings (greedy when
    temperature is 0), an optional system prompt and the stop strings: with `stop_at`, an
    answer in which one of them occurs ends with the first one (generation stops there), and
    `generate_stopped` says which answers did."""

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 16,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        system_prompt: str | None = None,
        stop_at: Sequence[str] = (),
    ):
        self.check_options(batch_size, max_new_tokens, temperature, top_p)
        if isinstance(stop_at, str) or not all(isinstance(s, str) and s for s in stop_at):
            raise LandscapeError("stop strings must be a list of non-empty strings")
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.temperature, self.top_p, self.system_prompt = temperature, top_p, system_prompt
        self.stop_at: tuple[str, ...] = tuple(dict.fromkeys(stop_at))
        # What generation cost, for benchmarks: decoding positions so far (one per row and
        # step), and per prompt of the last call the positions its row took; backends add to
        # them as they can see them.
        self.positions, self.lengths = 0, []

    def generate(self, prompts: list[str], seed: int = 0, stop: bool = True) -> list[str]:
        """One answer per prompt, in the prompts' order; identical calls give identical answers.
        `stop=False` generates every answer in full, whatever `stop_at` says."""
        return self.generate_stopped(prompts, seed, stop)[0]

    def generate_stopped(
        self, prompts: list[str], seed: int = 0, stop: bool = True
    ) -> tuple[list[str], list[bool]]:
        """The answers and, for each, whether it was cut at a stop string (it then ends with
        the first one that occurs in it: `cut_at_stop`). Without stop strings, or with
        `stop=False`, no answer is cut and the answers are those of `generate`."""
        raise NotImplementedError

    @contextmanager
    def sampling(self, temperature: float, top_p: float = 1.0) -> Iterator[None]:
        """Answers drawn at `temperature` and `top_p` inside the block (every backend reads
        them at each call); the generator's own settings come back however the block ends."""
        self.check_options(self.batch_size, self.max_new_tokens, temperature, top_p)
        kept = self.temperature, self.top_p
        self.temperature, self.top_p = temperature, top_p
        try:
            yield
        finally:
            self.temperature, self.top_p = kept

    def finish(self, texts: list[str], stop: bool) -> tuple[list[str], list[bool]]:
        """Decoded answers as stored: stripped, or cut at their first stop string."""
        if not (stop and self.stop_at):
            return [t.strip() for t in texts], [False] * len(texts)
        cuts = [cut_at_stop(t, self.stop_at) for t in texts]
        return [t.strip() if c is None else c for t, c in zip(texts, cuts)], [
            c is not None for c in cuts
        ]

    @staticmethod
    def check_options(batch_size: int, max_new_tokens: int, temperature: float, top_p: float):
        if batch_size < 1 or max_new_tokens < 1:
            raise LandscapeError("batch size and max new tokens must be at least 1")
        if temperature < 0 or not 0 < top_p <= 1:
            raise LandscapeError("temperature must be >= 0 and top_p in (0, 1]")

    def context_length(self) -> int | None:
        """The model's context in tokens (None where its config does not say)."""
        return getattr(getattr(self.model, "config", None), "max_position_embeddings", None)

    def check_lengths(self, prompts: list[str]) -> None:
        """A one-line LandscapeError naming the first prompt that, inside the chat template,
        leaves no room for max_new_tokens in the model's context: checked before a run
        writes anything, rather than failing deep inside generation (or on a huge
        allocation) at some point of the grid."""
        from landscape.prompts import render_chat

        context = self.context_length()
        if context is None:
            return
        room = context - self.max_new_tokens
        if room < 1:
            raise LandscapeError(
                f"--max-new-tokens {self.max_new_tokens} leaves no room for a prompt in the "
                f"model's {context}-token context"
            )
        add_special = not getattr(self.tokenizer, "chat_template", None)
        for i, prompt in enumerate(prompts, 1):
            text = render_chat(self.tokenizer, prompt, self.system_prompt)
            n = len(self.tokenizer(text, add_special_tokens=add_special)["input_ids"])
            if n > room:
                raise LandscapeError(
                    f"prompt {i} is {n} tokens in the chat template; with --max-new-tokens "
                    f"{self.max_new_tokens} it does not fit the model's {context}-token context"
                )

    def sync(self) -> None:
        """Called after the weights of the model this generator was built on changed in place
        (at each grid point, and once after the last point, when θ0 is back). Backends that
        generate from their own copy of the weights reload them here; `hf` shares the model."""
