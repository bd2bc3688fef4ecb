"""Tensor parallelism for the vLLM backend, without vLLM imported: what a TP size must satisfy,
the devices it runs on, the direction files it takes, and the per-GPU memory plan.

Devices: on a CUDA machine, the visible GPUs. On vLLM's CPU backend each rank binds its
threads to cores of its own (`VLLM_CPU_OMP_THREADS_BIND`, one group per rank), so there the
devices are the CPU cores this process may run on: a TP size above their number is refused.

The memory plan (per GPU, W = the model's parameters in its dtype): live weights (2-D tensors
split N ways, 1-D ones replicated), θ0 of the perturbed tensors (their shards, same dtype),
each direction (fp32 shards, on the GPU or in pinned host memory), the fp32 buffers of one
set point (the largest perturbed shard, for the sum and for staging a host direction), and
the KV cache of `batch_size` sequences of 512 prompt tokens plus the answer (at least one
full context), with KV heads split N ways. vLLM keeps a tenth of the GPU for activations
(its default `gpu_memory_utilization` of 0.9); the rest is the budget.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from landscape.directions.stream import checkpoint_shapes, safetensors_header
from landscape.errors import LandscapeError

BUDGET_FRACTION = 0.9  # vLLM's default gpu_memory_utilization
KV_PROMPT_TOKENS = 512  # as the vLLM backend sizes its KV cache
DEFAULT_MAX_MODEL_LEN = 2048

# Llama-2-70B's config.json numbers (meta-llama/Llama-2-70b-hf), for plans made without it.
LLAMA2_70B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
}


def check_options(backend: str, n: int, driver_model: bool) -> None:
    """The checks of the options alone (no model read)."""
    if n < 1:
        raise LandscapeError(f"--tensor-parallel-size must be at least 1, got {n}")
    if backend != "vllm" and n != 1:
        raise LandscapeError(
            f"--tensor-parallel-size {n} needs --backend vllm (the {backend} backend runs one "
            "model on one device)"
        )
    if backend != "vllm" and not driver_model:
        raise LandscapeError(f"--no-driver-model needs --backend vllm, not {backend}")


def check_parallel(cfg) -> None:
    """The checks of a grid config's tensor parallel options that need neither vLLM nor a
    loaded model: the options, and, when --aligned is a local folder, its config's heads and
    its checkpoint's names and shapes against any .safetensors direction file given."""
    n = cfg.tensor_parallel_size
    check_options(cfg.backend, n, cfg.driver_model)
    if cfg.backend != "vllm" or (n == 1 and cfg.driver_model):
        return
    if cfg.coherence and not cfg.plan:
        raise LandscapeError(
            "--tensor-parallel-size above 1 and --no-driver-model need --no-coherence: the "
            "coherence pass scores answers with the model in this process"
        )
    folder = Path(cfg.aligned).expanduser() if cfg.aligned else None
    if folder is None or not (folder / "config.json").is_file():
        return  # the default world's pair, checked once it is at hand
    # A plan is for the machine it names (--gpu-memory), not for this one's devices.
    check_tensor_parallel(read_config(folder), n, (n, "devices") if cfg.plan else None)
    if cfg.plan:
        return
    shapes = checkpoint_shapes(folder)
    for kind in ("harmful", "benign"):
        path = getattr(cfg, kind, None)
        if path and str(path).endswith(".safetensors") and Path(path).is_file():
            check_direction_file(path, shapes)


def devices_present() -> tuple[int, str]:
    """How many devices a TP engine can spread over here, and what they are."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "GPUs"
    cpus = (
        os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    )
    return len(cpus), "CPU cores"


def heads(config) -> tuple[int, int]:
    """(attention heads, KV heads) of a config (a dict or an HF config)."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    h = get("num_attention_heads")
    return int(h), int(get("num_key_value_heads") or h)


def check_tensor_parallel(config, n: int, devices: tuple[int, str] | None = None) -> None:
    """A one-line LandscapeError unless `n` ranks can split this model here: n divides the
    attention and the KV heads and is at most the devices present."""
    h, kv = heads(config)
    if h % n or kv % n:
        raise LandscapeError(
            f"--tensor-parallel-size {n} does not divide the model's {h} attention heads and "
            f"{kv} KV heads"
        )
    count, what = devices if devices is not None else devices_present()
    if n > count:
        raise LandscapeError(f"--tensor-parallel-size {n} exceeds the {count} {what} present")


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise LandscapeError(f"{folder} has no config.json")
    cfg = json.loads(path.read_text())
    return cfg.get("text_config", cfg) if isinstance(cfg, dict) else cfg


def check_direction_file(path: str | Path, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """The names of a direction file, checked against the checkpoint's names and shapes."""
    try:
        header = safetensors_header(path)
    except (OSError, ValueError, struct.error) as e:
        raise LandscapeError(f"cannot read direction file {path}: {e}") from None
    for name, h in header.items():
        if name not in shapes:
            raise LandscapeError(f"direction file {path}: {name!r} is not in the model")
        if tuple(h["shape"]) != shapes[name]:
            raise LandscapeError(
                f"direction file {path}: {name!r} has shape {tuple(h['shape'])}, the model's is "
                f"{shapes[name]}"
            )
    return list(header)


# --- the memory plan ---------------------------------------------------------------------


def _meta_shapes(config) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the model a config describes, built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if isinstance(config, dict):
        cfg = dict(config)
        config = AutoConfig.for_model(cfg.pop("model_type", "llama"), **cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def memory_plan(
    config,
    n: int,
    *,
    n_directions: int,
    gpu_bytes: float,
    dtype_bytes: int = 2,
    scope: str = "blocks",
    offload: str = "auto",
    batch_size: int = 64,
    max_new_tokens: int = 48,
    max_model_len: int | None = None,
) -> dict:
    """Bytes per GPU at tensor parallel size `n` (see the module docstring), where each
    direction goes, and whether it fits (`fits`; `why` when not)."""
    import torch

    from landscape import scope as scope_mod

    shapes = _meta_shapes(config)
    metas = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    covered = set(scope_mod.select(metas, scope))

    def shard(s: tuple[int, ...]) -> int:  # 2-D tensors split n ways, the rest replicated
        numel = math.prod(s)
        return math.ceil(numel / n) if len(s) >= 2 else numel

    live = sum(shard(s) for s in shapes.values()) * dtype_bytes
    cov = [shard(s) for k, s in shapes.items() if k in covered]
    theta0 = sum(cov) * dtype_bytes
    direction = sum(cov) * 4
    buffers = (max(cov) * 4 if cov else 0) * (2 if dtype_bytes != 4 else 1)
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    h, kv = heads(config)
    head_dim = get("head_dim") or get("hidden_size") // h
    positions = get("max_position_embeddings") or DEFAULT_MAX_MODEL_LEN
    context = max_model_len or min(positions, DEFAULT_MAX_MODEL_LEN)
    tokens = max(context, batch_size * (KV_PROMPT_TOKENS + max_new_tokens))
    kv_cache = 2 * get("num_hidden_layers") * max(kv // n, 1) * head_dim * dtype_bytes * tokens
    budget = int(BUDGET_FRACTION * gpu_bytes)
    fixed = live + theta0 + buffers + kv_cache
    if offload == "none":
        where = ["device"] * n_directions
    elif offload == "cpu":
        where = ["host"] * n_directions
    else:
        room, where = budget - fixed, []
        for _ in range(n_directions):
            where.append("device" if direction <= room else "host")
            room -= direction if where[-1] == "device" else 0
    on_gpu = fixed + direction * where.count("device")
    plan = {
        "tensor_parallel_size": n,
        "gpu_bytes": int(gpu_bytes),
        "budget_bytes": budget,
        "live_bytes": live,
        "theta0_bytes": theta0,
        "direction_bytes": direction,
        "directions": where,
        "buffer_bytes": buffers,
        "kv_cache_bytes": kv_cache,
        "kv_tokens": tokens,
        "gpu_total_bytes": on_gpu,
        "host_bytes": direction * where.count("host"),
        "fits": on_gpu <= budget,
    }
    if not plan["fits"]:
        need = f"{on_gpu / 1e9:.1f} GB per GPU needed, {budget / 1e9:.1f} GB available"
        plan["why"] = (
            f"{need} even with every direction in host memory: use a larger tensor parallel size"
            if fixed > budget
            else f"{need} with the directions on the GPU (--offload none): use --offload auto"
        )
    return plan


def format_plan(plan: dict, title: str = "") -> str:
    """The plan as the lines `--plan` prints."""
    gb = 1e9
    where = ", ".join("GPU" if w == "device" else "host" for w in plan["directions"]) or "none"
    lines = [
        f"memory plan{': ' + title if title else ''} — tensor parallel "
        f"{plan['tensor_parallel_size']}, per GPU of {plan['gpu_bytes'] / gb:.1f} GB "
        f"(budget {plan['budget_bytes'] / gb:.1f} GB)",
        f"  live weights   {plan['live_bytes'] / gb:8.2f} GB",
        f"  θ0             {plan['theta0_bytes'] / gb:8.2f} GB",
        f"  directions     {plan['direction_bytes'] / gb:8.2f} GB each ({where})",
        f"  buffers        {plan['buffer_bytes'] / gb:8.2f} GB",
        f"  KV cache       {plan['kv_cache_bytes'] / gb:8.2f} GB ({plan['kv_tokens']} tokens)",
        f"  on the GPU     {plan['gpu_total_bytes'] / gb:8.2f} GB",
        f"  pinned host    {plan['host_bytes'] / gb:8.2f} GB per GPU",
        "  fits" if plan["fits"] else f"  does not fit: {plan['why']}",
    ]
    return "\n".join(lines)
