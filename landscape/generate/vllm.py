"""Generation with a vLLM engine that follows the weights of an in-memory Hugging Face model.

The grid perturbs the HF model in place; vLLM holds its own copy of the weights (on CPU even a
repacked one, so editing the HF tensors changes nothing there). `sync()` pushes the model's
current weights into the running engine with the worker's in-place `reload_weights`, which
redoes vLLM's post-load processing (repacking) layer by layer, then empties the prefix cache:
a prompt seen before a weight change would otherwise reuse the KV blocks computed with the old
weights, and answer as the old model did.

The engine starts once per generator, from a folder holding only the model's config
(`load_format="dummy"`); the real weights arrive through the first `sync()`. Prompts are
rendered and tokenized here with the HF tokenizer, and answers decoded with it, exactly as the
HF backend does, so vLLM does not need the tokenizer (a locally trained one can hand out ids
beyond `len(tokenizer)`, which vLLM's detokenizer does not expect). Stop strings are the
exception: vLLM matches them in the text its own detokenizer makes, so with `stop_at` the
folder holds the tokenizer too and each request carries the stop strings (a request that
stops leaves the running batch at once); the answer is still decoded with the HF tokenizer
and cut as the HF backend cuts it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
import tempfile

import torch

from landscape.errors import LandscapeError
from landscape.generate.base import Generator, batch_seed, cut_at_stop
from landscape.prompts import render_chat

log = logging.getLogger(__name__)

# Room for the prompts of a grid point: the engine refuses a prompt longer than this minus the
# answer, so it is checked before generating.
DEFAULT_MAX_MODEL_LEN = 2048
# Prompt tokens budgeted per sequence when sizing the KV cache (prompts sets are short requests).
KV_PROMPT_TOKENS = 512


# vLLM log lines that say nothing about this use of it, several times per grid point:
# - its CPU worker replaces torch.set_num_threads process-wide and warns at every call (its own
#   renderer makes some per request);
# - the tokenizer is ours (skip_tokenizer_init), so its chat-template warmup and EOS lookup fail;
# - rotary embeddings hold a computed cache and no checkpoint weights: each reload keeps it.
_NOISE = (
    ("vllm.v1.worker.cpu_worker", "CPU backend doesn't allow to use `torch.set_num_threads`"),
    ("vllm.renderers.base", "Chat template warmup failed"),
    ("vllm.renderers.base", "Using None for EOS token id"),
    ("vllm.model_executor.model_loader.reload.layerwise", "RotaryEmbedding: Failed to load"),
)


class _DropNoise(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def _quiet_vllm_logs() -> None:
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, prefix in _NOISE:
        by_logger[name] = (*by_logger.get(name, ()), prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(prefixes))


def _setup_env() -> None:
    """Defaults that must be in place before vLLM is imported; a user's own settings win."""
    # The engine in this process: weights then pass to the worker by reference, not through
    # a socket, and the HF model and the engine share the same tensors' memory budget.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # vLLM logs to stdout at INFO by default, into the middle of a CLI's own output.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # vLLM's CPU backend otherwise keeps a core back for a separate front-end process (there is
    # none here) and binds its threads to the rest: on a 2-core machine, to a single core.
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if cpus == list(range(cpus[0], cpus[-1] + 1)):
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cpus[0]}-{cpus[-1]}")


@contextlib.contextmanager
def _keep_random_state():
    """The engine seeds Python's, numpy's and torch's global generators when it starts in this
    process, and its sampler draws from torch's: the caller's random state is put back."""
    import numpy as np

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _context(cfg, max_model_len: int | None, max_new_tokens: int) -> int:
    """The engine's context length: `max_model_len`, else the model's own capped at
    DEFAULT_MAX_MODEL_LEN; refused when the answers alone would fill it."""
    positions = getattr(cfg, "max_position_embeddings", None) or DEFAULT_MAX_MODEL_LEN
    length = max_model_len or min(positions, DEFAULT_MAX_MODEL_LEN)
    if length <= max_new_tokens:
        raise LandscapeError(
            f"max new tokens ({max_new_tokens}) leave no room for a prompt in the model's "
            f"{length}-token context"
        )
    return length


def _eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer under HF `generate`: the generation config's and the
    tokenizer's end-of-sequence tokens."""
    ids = []
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None)
    ids += eos if isinstance(eos, list) else [eos]
    ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids if i is not None})


def _check_head_dim(config) -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    sizes = CPUAttentionBackend.get_supported_head_sizes()
    hd = _head_dim(config)
    if hd not in sizes:
        raise LandscapeError(
            f"vLLM on CPU supports attention head sizes {', '.join(map(str, sizes))}; "
            f"this model's is {hd}: use --backend hf"
        )


class VllmGenerator(Generator):
    """A vLLM engine over the weights of `model`, kept in step with it by `sync()`.

    Same constructor and answers as HFGenerator (greedy answers match it token for token up
    to floating-point ties); sampling is seeded per prompt, so it does not depend on batching,
    but draws other samples than the HF backend. `batch_size` caps the sequences the engine
    decodes at once; `max_model_len` and `kv_cache_bytes` size the engine (defaults: the
    model's context up to 2048 tokens; a KV cache for `batch_size` sequences of 512 prompt
    tokens plus the answer, and at least one full context). Python's, numpy's and torch's
    global random states are left as they were.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_model_len: int | None = None,
        kv_cache_bytes: int | None = None,
        **options,
    ):
        """`options`: the Generator's (batch_size, max_new_tokens, temperature, top_p,
        system_prompt)."""
        super().__init__(model, tokenizer, **options)
        _setup_env()
        _quiet_vllm_logs()
        try:
            from vllm import LLM
        except ImportError as e:
            from landscape.generate import VLLM_MISSING

            raise LandscapeError(VLLM_MISSING) from e

        cfg = model.config
        _check_head_dim(cfg)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.max_model_len = _context(cfg, max_model_len, self.max_new_tokens)
        dtype = next(model.parameters()).dtype
        if kv_cache_bytes is None:
            kv_cache_bytes = self._default_kv_cache_bytes(cfg, dtype)

        # Only the config goes to disk: the engine builds the model from it with placeholder
        # weights, and the first sync() loads the real ones from memory.
        self._dir = tempfile.TemporaryDirectory(prefix="landscape-vllm-")
        cfg = copy.deepcopy(cfg)
        # A GGUF model is dequantized in memory; its record would make vLLM expect GGUF files.
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        # A model built from a config (not loaded) has no architectures; vLLM picks its
        # implementation by this name.
        cfg.architectures = [type(model).__name__]
        cfg.save_pretrained(self._dir.name)
        if self.stop_at:  # vLLM matches stop strings in its own detokenizer's text
            tokenizer.save_pretrained(self._dir.name)
        log.info(
            "starting a vLLM engine (%s, context %d, KV cache %.0f MiB)",
            str(dtype).removeprefix("torch."),
            self.max_model_len,
            kv_cache_bytes / 2**20,
        )
        with _keep_random_state():
            self.llm = LLM(
                model=self._dir.name,
                load_format="dummy",
                dtype=str(dtype).removeprefix("torch."),
                skip_tokenizer_init=not self.stop_at,
                generation_config="vllm",  # no defaults from the folder: sampling is set here
                enforce_eager=True,
                max_model_len=self.max_model_len,
                max_num_seqs=self.batch_size,
                kv_cache_memory_bytes=int(kv_cache_bytes),
                seed=0,
            )
        self.sync()

    def _default_kv_cache_bytes(self, cfg, dtype) -> int:
        """Room for `batch_size` sequences of KV_PROMPT_TOKENS prompt tokens plus the answer,
        and at least for one full context (and 32 MiB)."""
        per_token = (
            2
            * cfg.num_hidden_layers
            * getattr(cfg, "num_key_value_heads", cfg.num_attention_heads)
            * _head_dim(cfg)
            * dtype.itemsize
        )
        tokens = max(self.max_model_len, self.batch_size * (KV_PROMPT_TOKENS + self.max_new_tokens))
        return max(per_token * tokens, 32 << 20)

    def context_length(self) -> int | None:
        return self.max_model_len  # the engine's own, which may be below the model's

    def sync(self) -> None:
        """Load the model's current weights into the engine and drop every cached prefix."""
        # All weights, in checkpoint names: vLLM reloads layer by layer and repacks a layer once
        # all of its tensors arrived (q, k and v together make its fused qkv_proj, for one).
        weights = [(n, t.detach()) for n, t in self.model.state_dict().items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache after a weight change")

    def _sampling_params(self, index: list[int], seed: int, stop: bool) -> list:
        """One request's settings per prompt; `index`: the prompts' places in the call,
        which seed their samples."""
        from vllm import SamplingParams

        # detokenize=False: answers are decoded with the HF tokenizer, as the HF backend does;
        # stop strings are matched in vLLM's own text, and only then is there one.
        kw = {
            "max_tokens": self.max_new_tokens,
            "stop_token_ids": self.eos_ids,
            "detokenize": stop,
        }
        if stop:
            kw.update(stop=list(self.stop_at), include_stop_str_in_output=True)
        if self.temperature == 0:
            return [SamplingParams(temperature=0.0, **kw)] * len(index)
        return [
            SamplingParams(
                temperature=self.temperature,
                top_p=self.top_p,
                top_k=0,
                seed=batch_seed(seed, i),
                **kw,
            )
            for i in index
        ]

    def _run(self, ids: list[list[int]], index: list[int], seed: int, stop: bool):
        """The answers' token ids, and whether each request stopped at a stop string."""
        # Sampling draws from per-request generators but also touches torch's global one.
        with _keep_random_state(), torch.inference_mode():
            outs = self.llm.generate(
                [{"prompt_token_ids": x} for x in ids],
                self._sampling_params(index, seed, stop),
                use_tqdm=False,
            )
        tokens = [list(o.outputs[0].token_ids) for o in outs]
        # stop_reason is the matched string for a stop string, a token id or None otherwise.
        return tokens, [isinstance(o.outputs[0].stop_reason, str) for o in outs]

    def generate_stopped(
        self, prompts: list[str], seed: int = 0, stop: bool = True
    ) -> tuple[list[str], list[bool]]:
        if not prompts:
            return [], []
        stop = stop and bool(self.stop_at)
        tok = self.tokenizer
        texts = [render_chat(tok, p, self.system_prompt) for p in prompts]
        # A chat template writes its own BOS; adding special tokens again would double it.
        add_special = not getattr(tok, "chat_template", None)
        ids = tok(texts, add_special_tokens=add_special)["input_ids"]
        room = self.max_model_len - self.max_new_tokens
        longest = max(range(len(ids)), key=lambda i: len(ids[i]))
        if len(ids[longest]) > room:
            raise LandscapeError(
                f"prompt {longest + 1} is {len(ids[longest])} tokens long: with "
                f"{self.max_new_tokens} new tokens it does not fit the vLLM engine's "
                f"{self.max_model_len}-token context"
            )
        tokens, hit = self._run(ids, list(range(len(ids))), seed, stop)
        # The engine decodes each request until it ends, never past; its steps are not seen.
        self.lengths = [len(t) for t in tokens]
        self.positions += sum(self.lengths)
        texts = [tok.decode(t, skip_special_tokens=True) for t in tokens]
        # A request stopped where the HF decoding holds no stop string (vLLM's incremental
        # text and HF's decoding disagree): generated again in full, with the same seed, so
        # that its answer is the one a run without stop strings gives.
        redo = [i for i, h in enumerate(hit) if h and cut_at_stop(texts[i], self.stop_at) is None]
        if redo:
            log.debug("%d answers stopped without their string; generated again in full", len(redo))
            full, _ = self._run([ids[i] for i in redo], redo, seed, stop=False)
            for i, t in zip(redo, full):
                texts[i] = tok.decode(t, skip_special_tokens=True)
        return self.finish(texts, stop)

    def close(self) -> None:
        """Shut the engine down and remove its config folder."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            del llm
        self._dir.cleanup()
