"""Load a model and its tokenizer (local folder or Hugging Face id), check a pair, fingerprint weights."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from landscape.cli import option
from landscape.errors import LandscapeError
from landscape.io import is_local

log = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The one place that picks a device: `auto` means cuda when available, else cpu."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise LandscapeError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LandscapeError(f"device {device!r} asked for, but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype | None:
    """A torch dtype from a name; `auto` gives None (keep the dtype stored with the weights)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise LandscapeError(
            f"unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)} or auto"
        ) from None


def _check_gguf(path: Path) -> None:
    """A one-line LandscapeError when `path` is missing, is not GGUF, or holds a model that
    is not a causal language model (an encoder, an encoder-decoder)."""
    if not path.is_file():
        raise LandscapeError(f"GGUF file does not exist: {path}")
    try:
        from gguf import GGUFReader

        arch = GGUFReader(str(path)).fields["general.architecture"]
        arch = bytes(arch.parts[arch.data[0]]).decode()
    except ImportError:
        raise LandscapeError("GGUF files need the gguf package: pip install gguf") from None
    except Exception:
        raise LandscapeError(f"{path} is not a readable GGUF file") from None
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        return
    # Only a model type transformers knows as something other than a causal LM is refused
    # here (t5, umt5, ...); an architecture it does not know at all fails in its own loader.
    model_type = arch.replace("-", "_")
    if model_type in CONFIG_MAPPING_NAMES and model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise LandscapeError(f"{path} holds a {arch!r} model, which is not a causal language model")


def check_model_folder(path: str | os.PathLike, hashes: bool = False) -> None:
    """A one-line LandscapeError when `path` is a model folder that the toolkit built (it
    holds a manifest.json) and no longer holds what was recorded: a file missing or of
    another size, or with `hashes` (`--verify`), other bytes. Names the command that
    rebuilds it. Folders without a manifest (downloads, others' models) are not checked."""
    from landscape.io import MANIFEST, manifest_problem, read_json

    folder = Path(path).expanduser()
    if not (folder / MANIFEST).is_file():
        return
    problem = manifest_problem(folder, hashes=hashes)
    if problem is None:
        return
    try:
        rebuild = read_json(folder / MANIFEST).get("rebuild")
    except (LandscapeError, AttributeError):
        rebuild = None
    fix = f"rebuild it with: {rebuild}" if rebuild else "copy it again from where it came from"
    raise LandscapeError(f"the model folder {folder} is damaged ({problem}): {fix}")


@dataclass
class ModelOptions:
    """The options that every command loading a model pair shares."""

    pair_seed: int = option(
        0,
        "with no --base/--aligned: the default world's pair (and its fine-tunes) built from "
        "this seed, so that a toy result can be repeated on independently trained pairs",
    )
    verify: bool = option(
        False,
        "check model folders that the toolkit built against their manifest byte for byte "
        "(SHA-256), not only file by file in size",
    )

    def check_pair_seed(self, on_world: bool) -> None:
        from landscape.checks import in_range

        in_range(self.pair_seed, "--pair-seed", ge=0)
        if self.pair_seed and not on_world:
            raise LandscapeError(
                "--pair-seed chooses the default world's pair; it does not go with --aligned"
            )

    def check_model_files(self, *paths: str | None) -> None:
        """Each local model folder among `paths` against its manifest: sizes always,
        hashes with --verify (before any model is loaded)."""
        for p in paths:
            if p and is_local(p) and Path(p).expanduser().is_dir():
                check_model_folder(p, hashes=self.verify)


def load_model(
    name_or_path: str | os.PathLike,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "auto",
    gguf_file: str | None = None,
):
    """Return `(model, tokenizer)` ready for batched generation: eval mode, left padding, a pad token.

    `name_or_path` may also be a `.gguf` file, or a folder with `gguf_file` naming one in it
    (dequantised by transformers to `dtype`). A folder that the toolkit built is checked
    against its manifest's file sizes first (`check_model_folder`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_path)
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    local = Path(name).expanduser()
    if local.is_file() and local.suffix.lower() == ".gguf" and gguf_file is None:
        # A GGUF file named directly: transformers wants its folder and its file name.
        local, gguf_file = local.parent, local.name
        name = str(local)
    if local.exists():
        name = str(local)
        if local.is_dir():
            check_model_folder(local)
    elif is_local(name):
        raise LandscapeError(f"path does not exist: {name}")
    if gguf_file and local.exists():
        _check_gguf(local / gguf_file)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=torch_dtype if torch_dtype is not None else "auto", **extra
        )
    except (OSError, ValueError) as e:
        if local.exists():
            raise LandscapeError(f"cannot load a model from {name}: {e}".splitlines()[0]) from e
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        why = "the hub cannot be reached offline" if offline else "it cannot be reached"
        raise LandscapeError(
            f"cannot load {name!r} from the Hugging Face hub ({why}, or the id is wrong): "
            "pass a local folder that holds the model and its tokenizer"
        ) from e
    model.to(dev)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # Left padding is masked out, so any token will do; eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    n = sum(p.numel() for p in model.parameters())
    log.info(
        "loaded %s (%s, %.1fM parameters, %s on %s)",
        name,
        type(model).__name__,
        n / 1e6,
        next(model.parameters()).dtype,
        dev,
    )
    return model, tokenizer


def check_pair(model_a, model_b, names=None) -> None:
    """Raise a LandscapeError naming the first parameter that is missing or differs in shape."""
    pa = dict(model_a.named_parameters())
    pb = dict(model_b.named_parameters())
    order = list(names) if names is not None else list(pa) + [n for n in pb if n not in pa]
    for n in order:
        if n not in pa or n not in pb:
            which = "first" if n not in pa else "second"
            raise LandscapeError(f"models do not match: parameter {n} is missing from the {which}")
        if pa[n].shape != pb[n].shape:
            raise LandscapeError(
                f"models do not match: parameter {n} has shape "
                f"{tuple(pa[n].shape)} vs {tuple(pb[n].shape)}"
            )


def fingerprint(model) -> str:
    """16 hex chars of sha256 over parameter names, dtypes, shapes and bytes (deterministic)."""
    return tensors_fingerprint(model.named_parameters())


def tensors_fingerprint(items) -> str:
    """`fingerprint` of any (name, tensor) pairs, in their order: a model's parameters, a
    direction's tensors."""
    h = hashlib.sha256()
    for name, p in items:
        t = p.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # Raw bytes through a uint8 view: works for bf16, which numpy cannot hold.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
