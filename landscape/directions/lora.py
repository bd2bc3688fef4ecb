"""A peft LoRA adapter folder as a Direction: ΔW = scaling · B @ A per module, unmerged."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from landscape.directions.direction import (
    Direction,
    Names,
    Source,
    _fp32,
    _params,
    _resolve,
    _source,
)
from landscape.errors import LandscapeError
from landscape.io import read_json

log = logging.getLogger(__name__)


def _lora_key(key: str) -> tuple[str, str]:
    """Split a peft key into (module path, role)."""
    key = key.removeprefix("base_model.model.")
    for role in (
        "lora_A.weight",
        "lora_B.weight",
        "lora_B.bias",
        "lora_embedding_A",
        "lora_embedding_B",
        "lora_magnitude_vector",
    ):
        if key.endswith("." + role):
            return key[: -len(role) - 1], role
    return key, "full"


PEFT_PREFIX = "base_model.model."


def match_name(cand: str, names: Sequence[str], what: str = "name") -> str | None:
    """The one of `names` that `cand` (a model-side or adapter-side weight name) means: the
    same name, else the unique one that a dotted suffix matches either way (peft and wrapper
    prefixes differ); None when none does, an error when several do."""
    cand = cand.removeprefix(PEFT_PREFIX)
    if cand in names:
        return cand
    hits = [n for n in names if n.endswith("." + cand) or cand.endswith("." + n)]
    if len(hits) > 1:
        raise LandscapeError(f"{what} {cand!r} matches several tensors: {hits[:4]}")
    return hits[0] if hits else None


def _read_adapter(path: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """An adapter folder's config and its tensors grouped by module: module -> role -> tensor."""
    from safetensors.torch import load_file

    cfg_path, w_path = path / "adapter_config.json", path / "adapter_model.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise LandscapeError(
            f"{path} is not a peft adapter folder (adapter_config.json + adapter_model.safetensors)"
        )
    cfg = read_json(cfg_path)
    if cfg.get("peft_type", "LORA") != "LORA":
        raise LandscapeError(f"adapter type {cfg.get('peft_type')!r} is not supported, only LORA")
    if cfg.get("use_dora") or cfg.get("target_parameters"):
        raise LandscapeError("DoRA and target_parameters adapters are not supported")
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(w_path)).items():
        module, role = _lora_key(key)
        groups.setdefault(module, {})[role] = t
    return cfg, groups


def _scaling(cfg: dict, module: str, r: int) -> float:
    """lora_alpha / r (lora_alpha / sqrt(r) with use_rslora), alpha_pattern honoured."""
    alpha = cfg.get("lora_alpha", r)
    for pat, a in (cfg.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pat})$", module):  # peft's own pattern rule
            alpha = a
            break
    return alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r


def _module_update(
    cfg: dict, module: str, parts: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The weight (and bias) updates one adapter module makes, keyed by reference names."""
    ref_names = list(ref)
    if "lora_magnitude_vector" in parts:
        raise LandscapeError("DoRA adapters are not supported")
    if ".base_layer." in module + ".":  # frozen base weight saved beside the LoRA (embeddings)
        name = match_name(module.replace(".base_layer", ""), ref_names)
        if name is None or not torch.equal(_fp32(parts["full"]), _fp32(ref[name])):
            log.warning("adapter's saved base weight %s differs from the reference model", module)
        return {}
    if "full" in parts:  # modules_to_save / trained biases: stored whole
        name = match_name(module, ref_names)
        if name is None:
            raise LandscapeError(f"adapter tensor {module!r} has no matching reference parameter")
        return {name: _fp32(parts["full"]) - _fp32(ref[name])}
    emb = "lora_embedding_A" in parts
    A = parts.get("lora_embedding_A" if emb else "lora_A.weight")
    B = parts.get("lora_embedding_B" if emb else "lora_B.weight")
    if A is None or B is None or A.ndim != 2:
        raise LandscapeError(f"unsupported LoRA module {module!r} (keys: {sorted(parts)})")
    scaling = _scaling(cfg, module, A.shape[0])  # r read from A's shape
    dw = (B.double() @ A.double()) * scaling
    if emb or cfg.get("fan_in_fan_out"):
        dw = dw.T
    name = match_name(module + ".weight", ref_names)
    if name is None:
        raise LandscapeError(f"adapted module {module!r} has no weight in the reference model")
    out = {name: dw.float()}
    if "lora_B.bias" in parts:
        bname = match_name(module + ".bias", ref_names)
        if bname is None:
            raise LandscapeError(
                f"adapted module {module!r} has a LoRA bias but no bias in the reference model"
            )
        out[bname] = _fp32(parts["lora_B.bias"]) * scaling
    return out


def from_lora_adapter(
    adapter_dir: str | Path,
    reference_model: Source,
    names: Names = None,
    kind: str = "custom",
) -> Direction:
    """ΔW = scaling · B @ A for each module of a peft LoRA adapter folder, without merging.

    scaling = lora_alpha / r (lora_alpha / sqrt(r) with use_rslora; alpha_pattern honoured,
    r read from A's shape). Keyed by the base weight's name in `reference_model`. With
    `names` (a list or a scope string), names not adapted get zeros and adapted weights
    outside it are dropped; with None, only the adapted weights."""
    path = Path(adapter_dir)
    cfg, groups = _read_adapter(path)
    ref = _params(reference_model)
    out: dict[str, torch.Tensor] = {}
    for module, parts in groups.items():
        out.update(_module_update(cfg, module, parts, ref))

    sc = None
    if names is None:
        order = [n for n in ref if n in out]
    else:
        order, sc = _resolve(names, reference_model)
        dropped = [n for n in out if n not in set(order)]
        if dropped:
            log.info("LoRA adapter: %d adapted tensors outside the scope dropped", len(dropped))
        for n in order:
            if n not in ref:
                raise LandscapeError(f"reference has no parameter {n!r}")
    tensors = {n: out[n] if n in out else torch.zeros(tuple(ref[n].shape)) for n in order}
    for n, t in tensors.items():
        if tuple(t.shape) != tuple(ref[n].shape):
            raise LandscapeError(
                f"LoRA update shape {tuple(t.shape)} != weight shape {tuple(ref[n].shape)} at {n!r}"
            )
    meta = {
        "kind": kind,
        "scope": sc,
        "norm": "none",
        "sources": [str(path), _source(reference_model)],
        "lora": {
            "r": cfg.get("r"),
            "lora_alpha": cfg.get("lora_alpha"),
            "use_rslora": bool(cfg.get("use_rslora")),
        },
    }
    return Direction(tensors, meta)
