"""A grid run whose model lives only in vLLM's workers: `--backend vllm` with
`--tensor-parallel-size N` above 1, or `--no-driver-model`.

This process reads the aligned model's config, its tokenizer and, tensor by tensor, its
safetensors (for the fingerprint and as the normalisation's reference); it builds the run's
directions by streaming (`landscape.directions.stream`: bitwise the directions the in-memory
path builds) into safetensors files in a temporary folder beside the run folder, and hands
them to a `VllmTPGenerator`, whose workers load them once and set each point from its
coefficients. The memory plan (`landscape.generate.tp.memory_plan`) places the directions
and refuses a run that cannot fit. Coherence (an NLL pass with the model in this process)
and utility prompts are not available here.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from landscape import directions as D
from landscape.directions import stream
from landscape.directions.sources import finetune_source
from landscape.errors import LandscapeError
from landscape.generate.tp import (
    check_direction_file,
    check_parallel,
    check_tensor_parallel,
    format_plan,
    memory_plan,
    read_config,
)
from landscape.grid.config import GridConfig
from landscape.grid.context import RunContext
from landscape.models import resolve_dtype

log = logging.getLogger(__name__)


def uses_workers(cfg: GridConfig) -> bool:
    """Whether the run's model lives only in vLLM's workers."""
    return cfg.backend == "vllm" and (cfg.tensor_parallel_size > 1 or not cfg.driver_model)


def _folder(path: str, what: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise LandscapeError(
            f"the {what} model {path} must be a local folder with config.json and safetensors "
            "files: with --tensor-parallel-size above 1 or --no-driver-model its workers load it"
        )
    return folder


def _dtype(cfg: GridConfig, config: dict) -> torch.dtype:
    dtype = resolve_dtype(cfg.dtype)
    if dtype is None:  # auto: as stored
        dtype = resolve_dtype(str(config.get("torch_dtype") or "float32"))
    return dtype


def _gpu_bytes(cfg: GridConfig) -> float:
    """What one rank may hold: --gpu-memory, the GPU's memory, or on CPU a share of RAM."""
    if cfg.gpu_memory is not None:
        return cfg.gpu_memory * 1e9
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ram / cfg.tensor_parallel_size


def plan_of(cfg: GridConfig) -> tuple[dict, str]:
    """The run's memory plan and its description; a LandscapeError when it cannot fit."""
    _, aligned = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    folder = _folder(aligned, "aligned")
    config = read_config(folder)
    n = cfg.tensor_parallel_size
    check_tensor_parallel(config, n, (n, "devices"))  # the heads; the devices are the run's
    plan = memory_plan(
        config,
        n,
        n_directions=len(cfg.dirs),
        gpu_bytes=_gpu_bytes(cfg),
        dtype_bytes=_dtype(cfg, config).itemsize,
        scope=cfg.scope,
        offload=cfg.offload,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
    )
    text = format_plan(plan, f"{folder.name}, {len(cfg.dirs)} directions")
    if not plan["fits"]:
        raise LandscapeError(f"the memory plan does not fit: {plan['why']}")
    return plan, text


def plan_text(cfg: GridConfig) -> str:
    """What `--plan` prints; it needs neither vLLM nor the model's weights, only its config."""
    from landscape import scope

    check_parallel(cfg)
    scope.check(cfg.scope)
    for name in cfg.dirs:
        D.parse_kind(name)
    return plan_of(cfg)[1]


def _raw_sources(cfg, base_path, aligned: stream.Checkpoint, names, shapes, dtype):
    """The raw direction sources, as `build_directions` builds them in memory."""
    raws = []
    for name in cfg.dirs:
        kind = D.parse_kind(name)
        if kind.kind == "aligned":
            if base_path is None:
                raise LandscapeError("the aligned direction needs the base model as well (--base)")
            base = stream.Checkpoint(_folder(base_path, "base"))
            # The in-memory path: the aligned model in the run's dtype, the base in fp32.
            raws.append(stream.delta_source(aligned, base, dtype, torch.float32))
        elif kind.kind == "random":
            raws.append(stream.random_source(shapes, cfg.seed if kind.seed is None else kind.seed))
        else:
            path = Path(
                finetune_source(
                    kind.kind, getattr(cfg, kind.kind), f"--{kind.kind}", cfg.pair_seed, None,
                    cfg.on_world,
                )
            )  # fmt: skip
            if path.suffix == ".safetensors":
                check_direction_file(path, aligned.shapes)
                source, have, _ = stream.file_source(path)
            elif (path / "adapter_config.json").exists():
                raise LandscapeError(
                    f"the {kind.kind} direction {path} is a LoRA adapter: with the model only in "
                    "vLLM's workers give it as a .safetensors direction file"
                )
            else:
                tuned = stream.Checkpoint(path)
                have = [n for n in names if n in tuned.index]
                source = stream.delta_source(tuned, aligned, None, dtype)
            if list(have) != list(names):
                raise LandscapeError(
                    f"the {kind.kind} direction ({path}) covers other parameters than the scope"
                )
            raws.append(source)
    return raws


def _scratch(out: Path) -> tempfile.TemporaryDirectory:
    """A temporary folder for the direction files beside the run folder (large models'
    directions are large; a system temporary folder may be small)."""
    where = out.parent
    while not where.exists():
        where = where.parent
    return tempfile.TemporaryDirectory(prefix=".landscape-directions-", dir=where)


def start_workers(cfg: GridConfig, store, judges, prompts, stops, show_progress: bool):
    """`run.py`'s `_start` for a run whose model lives only in vLLM's workers: the context,
    the env and the raw cosine of the two directions."""
    from transformers import AutoTokenizer

    from landscape.generate.vllm_tp import VllmTPGenerator
    from landscape.grid.run import check_same_models, write_start_env
    from landscape.models import tensors_fingerprint

    if getattr(cfg, "utility_prompts", None) is not None:
        raise LandscapeError(
            "--utility-prompts needs the model in this process: drop --tensor-parallel-size "
            "and --no-driver-model"
        )
    base_path, aligned_path = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    folder = _folder(aligned_path, "aligned")
    config = read_config(folder)
    n = cfg.tensor_parallel_size
    check_tensor_parallel(config, n)
    plan, text = plan_of(cfg)
    log.debug("%s", text)
    log.info(
        "memory plan per rank: %.2f GB on the device of a %.1f GB budget, directions on %s",
        plan["gpu_total_bytes"] / 1e9,
        plan["budget_bytes"] / 1e9,
        ", ".join(plan["directions"]),
    )
    dtype = _dtype(cfg, config)
    aligned = stream.Checkpoint(folder)
    names, shapes = stream.model_names(folder, cfg.scope)
    absent = [k for k in shapes if k not in aligned.index]
    if absent:
        raise LandscapeError(f"{folder}: the checkpoint holds no tensor {absent[0]!r}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    raws = _raw_sources(cfg, base_path, aligned, names, shapes, dtype)
    dirs, cos = stream.streamed(raws, names, cfg.norm, lambda k: aligned.get(k, dtype))
    scratch = _scratch(store.out_dir)
    paths, fingerprints = [], {}
    for i, (name, d) in enumerate(zip(cfg.dirs, dirs)):
        path = Path(scratch.name) / f"{i}-{name.replace(':', '')}.safetensors"
        kind = D.parse_kind(name).kind
        meta = {"kind": kind, "scope": cfg.scope, "norm": cfg.norm, "name": name}
        fingerprints[name] = stream.write_direction(path, names, shapes, d, meta)
        paths.append(path)
    import transformers

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "dtype": str(dtype),
        "threads": torch.get_num_threads(),
        "tensor_parallel_size": n,
        "models": {"base": base_path, "aligned": aligned_path},
        # Over the parameters in the model's order and dtype: the in-memory fingerprint.
        "fingerprint_aligned": tensors_fingerprint((k, aligned.get(k, dtype)) for k in shapes),
        "fingerprint_directions": fingerprints,
        "offload": plan,
    }
    check_same_models(store, env)
    gen = VllmTPGenerator(
        folder,
        tokenizer,
        paths,
        tensor_parallel_size=n,
        dtype=str(dtype).removeprefix("torch."),
        placement=plan["directions"],
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        system_prompt=cfg.system_prompt,
        stop_at=stops,
    )
    gen._scratch = scratch  # the direction files live as long as the engine reads them
    gen.check_lengths(prompts)
    store.create()
    write_start_env(store, env)
    ctx = RunContext(
        cfg=cfg,
        store=store,
        model=None,
        dirs=list(cfg.dirs),
        gen=gen,
        judges=judges,
        asked=[p for p in prompts for _ in range(cfg.samples)],
        theta0={},
        show_progress=show_progress,
        calibration=None,
    )
    return ctx, env, cos


__all__ = ["plan_of", "plan_text", "start_workers", "uses_workers"]
