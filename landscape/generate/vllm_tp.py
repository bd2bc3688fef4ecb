"""Generation with a vLLM engine whose workers hold the directions and perturb their own shards.

`VllmTPGenerator` starts one engine over a model folder's safetensors, at any tensor parallel
size (the `mp` executor for more than one rank), with `landscape.generate.vllm_worker` mixed
into every worker. The directions go to the workers once, as files; a grid point is then
its coefficients: `set_point` runs `set_point` on every rank through `collective_rpc` and
empties the prefix cache (a prompt seen before the change would otherwise reuse KV blocks of
the old weights; a reset that does not happen is an error). The driver holds the tokenizer
and the config, never the model: prompts are rendered, tokenized and decoded here exactly
as `VllmGenerator` (and the HF backend) does.

Used as the grid uses a generator over an in-memory model: `perturbed(coefficients)` is the
block in which the point holds, `sync()` makes the engine follow (inside the block: the
point; after it: θ0).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from landscape.errors import LandscapeError
from landscape.generate.base import Generator
from landscape.generate.tp import check_tensor_parallel
from landscape.generate.vllm import (
    VllmGenerator,
    _check_head_dim,
    _context,
    _eos_ids,
    _keep_random_state,
    _quiet_vllm_logs,
    _setup_env,
)

log = logging.getLogger(__name__)

WORKER = "landscape.generate.vllm_worker.LandscapeWorker"
UNPACK_ENV = "LANDSCAPE_VLLM_CPU_UNPACK"
_FP32_MAX = 3.4028234663852886e38


def _cpu_groups(n: int) -> str:
    """`VLLM_CPU_OMP_THREADS_BIND` for `n` ranks: the cores of this process (or of a
    single-group binding already set) dealt into `n` contiguous groups, one per rank."""
    current = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "")
    if "|" in current:
        if len(current.split("|")) != n:
            raise LandscapeError(
                f"VLLM_CPU_OMP_THREADS_BIND={current} binds {len(current.split('|'))} ranks, "
                f"not the {n} of --tensor-parallel-size"
            )
        return current
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if current and current not in ("auto", "all") and "-" in current:
        lo, hi = (int(x) for x in current.split("-"))
        cpus = list(range(lo, hi + 1))
    if len(cpus) < n:
        raise LandscapeError(f"--tensor-parallel-size {n} needs {n} CPU cores, {len(cpus)} here")
    size = len(cpus) // n
    groups = [cpus[i * size : (i + 1) * size] for i in range(n)]
    return "|".join(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)


@contextmanager
def _environ(name: str, value: str | None):
    """`name` set to `value` while the engine starts (its workers read it), then put back;
    vLLM's cache of its environment is dropped both times, since an engine started earlier in
    this process froze it."""
    if value is None:
        yield
        return
    import vllm.envs

    old = os.environ.get(name)
    os.environ[name] = value
    vllm.envs.disable_envs_cache()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
        vllm.envs.disable_envs_cache()


class VllmTPGenerator(VllmGenerator):
    """A vLLM engine over the checkpoint in `model_dir` at `tensor_parallel_size` ranks,
    perturbed inside its workers along the direction files `directions` (safetensors in the
    checkpoint's tensor names, all over the same names).

    `placement`: per direction, "device" (default) or "host" (pinned host memory, streamed
    per tensor at each point). `route`: "auto" (in place when the engine's layout allows it,
    else `reload_weights`), or "in-place"/"reload" to insist; `unpack` (default from
    LANDSCAPE_VLLM_CPU_UNPACK) gives CPU linear layers plain weights so that the in-place
    route can run there. The rest is VllmGenerator's."""

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        directions: list[str | Path],
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "float32",
        placement: list[str] | None = None,
        route: str = "auto",
        unpack: bool | None = None,
        max_model_len: int | None = None,
        kv_cache_bytes: int | None = None,
        **options,
    ):
        from transformers import AutoConfig, GenerationConfig

        Generator.__init__(self, None, tokenizer, **options)
        _setup_env()
        _quiet_vllm_logs()
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as e:
            from landscape.generate import VLLM_MISSING

            raise LandscapeError(VLLM_MISSING) from e
        import torch

        model_dir = Path(model_dir)
        n = int(tensor_parallel_size)
        cfg = AutoConfig.from_pretrained(model_dir)
        check_tensor_parallel(cfg, n)
        _check_head_dim(cfg)
        try:
            gen_cfg = GenerationConfig.from_pretrained(model_dir)
        except OSError:  # a folder without generation_config.json
            gen_cfg = None
        self.config = cfg
        self.eos_ids = _eos_ids(SimpleNamespace(generation_config=gen_cfg), tokenizer)
        self.max_model_len = _context(cfg, max_model_len, self.max_new_tokens)
        torch_dtype = getattr(torch, dtype)
        if kv_cache_bytes is None:
            kv_cache_bytes = self._default_kv_cache_bytes(cfg, torch_dtype)
        bind = _cpu_groups(n) if current_platform.is_cpu() and n > 1 else None
        if unpack is None:
            unpack = os.environ.get(UNPACK_ENV, "0") not in ("", "0", "false", "False")
        self.directions = [str(p) for p in directions]
        self.tensor_parallel_size = n
        self._dir = None
        log.info(
            "starting a vLLM engine at tensor parallel size %d (%s, context %d, KV cache %.0f "
            "MiB per rank)",
            n,
            dtype,
            self.max_model_len,
            kv_cache_bytes / 2**20 / n,
        )
        t = time.perf_counter()
        with _keep_random_state(), _environ("VLLM_CPU_OMP_THREADS_BIND", bind):
            self.llm = LLM(
                model=str(model_dir),
                dtype=dtype,
                skip_tokenizer_init=not self.stop_at,
                generation_config="vllm",
                enforce_eager=True,
                tensor_parallel_size=n,
                distributed_executor_backend="mp" if n > 1 else None,
                worker_extension_cls=WORKER,
                max_model_len=self.max_model_len,
                max_num_seqs=self.batch_size,
                kv_cache_memory_bytes=int(kv_cache_bytes),
                seed=0,
            )
            reports = self.llm.collective_rpc(
                "load_directions", args=(self.directions, placement, bool(unpack), route)
            )
        self.start_s = time.perf_counter() - t
        self.route, self.reason = reports[0]["route"], reports[0]["reason"]
        if any(r["route"] != self.route for r in reports):
            raise RuntimeError("vLLM's ranks disagree on how to perturb: " + repr(reports))
        if route == "in-place" and self.route != "in-place":
            raise LandscapeError(f"the in-place route cannot run here: {self.reason}")
        if self.reason:
            log.warning("perturbing through vLLM's reload_weights: %s", self.reason)
        log.info(
            "directions in the workers: %s route, %.1f MB per rank",
            self.route,
            reports[0]["bytes"] / 1e6,
        )
        self._want = [0.0] * len(self.directions)
        self._applied: list[float] | None = None
        self.sync()

    def context_length(self) -> int | None:
        return self.max_model_len

    @contextmanager
    def perturbed(self, coefficients):
        """The block in which the engine's point is `coefficients` (one per direction, in
        order, or a mapping whose values are in that order); `sync()` applies it."""
        values = list(coefficients.values()) if hasattr(coefficients, "values") else coefficients
        if len(values) != len(self.directions):
            raise LandscapeError(
                f"{len(values)} coefficients for {len(self.directions)} directions"
            )
        self._want = [float(c) for c in values]
        try:
            yield self
        finally:
            self._want = [0.0] * len(self.directions)

    def sync(self) -> None:
        """Set the engine at the wanted point (θ0 outside `perturbed`) if it is elsewhere."""
        if self._applied != self._want:
            self.set_point(self._want)

    def set_point(self, coefficients: list[float]) -> None:
        """θ0 + Σ cᵢ·dᵢ in every rank's shards, then the prefix cache emptied."""
        coefficients = [float(c) for c in coefficients]
        described = ", ".join(f"{c:g}" for c in coefficients)
        if any(not abs(c) <= _FP32_MAX for c in coefficients):
            raise LandscapeError(f"non-finite weights at coefficients ({described})")
        self._applied = None  # unknown until every rank has answered
        bad = [b for b in self.llm.collective_rpc("set_point", args=(coefficients,)) if b]
        if bad:
            self._applied = [0.0] * len(coefficients)
            raise LandscapeError(f"non-finite weights in {bad[0]!r} at coefficients ({described})")
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not reset its prefix cache after a weight change")
        self._applied = coefficients

    def worker_state(self) -> list[dict]:
        """Every rank's `landscape_state` (its route, and its shards on the in-place route)."""
        return self.llm.collective_rpc("landscape_state")

    def close(self) -> None:
        """Shut the engine and its workers down."""
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            shutdown = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
            del llm
