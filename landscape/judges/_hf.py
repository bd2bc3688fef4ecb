"""What the judges that run a Hugging Face model share: `HFJudge` (batch size, loading,
batches with a progress bar), loading and greedy decoding.

The architecture is checked from the config before any weights are read, so a wrong folder
fails in a second with a one-line message instead of after loading several GB.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from tqdm.auto import tqdm

from landscape.errors import LandscapeError
from landscape.io import is_local
from landscape.judges.base import Judge
from landscape.models import resolve_device, resolve_dtype

log = logging.getLogger(__name__)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def locate(judge: str, name: str) -> str:
    """A local folder as an absolute path, or the hub id unchanged."""
    local = Path(name).expanduser()
    if local.exists():
        return str(local)
    if is_local(name):
        raise LandscapeError(f"{judge} judge: weights folder does not exist: {name}")
    return name


def load_config(judge: str, name: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        if Path(name).exists():
            msg = f"{judge} judge: cannot read a model config from {name}: {e}"
            raise LandscapeError(msg.splitlines()[0]) from e
        why = "the hub cannot be reached offline" if _offline() else "it cannot be reached"
        raise LandscapeError(
            f"{judge} judge: cannot load {name!r} from the Hugging Face hub ({why}, or the id "
            f"is wrong): pass a local folder, e.g. --judge {judge}:/path/to/weights"
        ) from e


def _architectures(config) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def check_causal_lm(judge: str, name: str, config) -> None:
    archs = _architectures(config)
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise LandscapeError(
            f"{judge} judge needs a causal language model (...ForCausalLM), but {name} holds "
            f"{', '.join(archs) or 'no architecture in its config'}"
        )


def check_classifier(judge: str, name: str, config, num_labels: int) -> None:
    archs = _architectures(config)
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise LandscapeError(
            f"{judge} judge needs a sequence classifier (...ForSequenceClassification), but "
            f"{name} holds {', '.join(archs) or 'no architecture in its config'}"
        )
    if config.num_labels != num_labels:
        raise LandscapeError(
            f"{judge} judge needs a classifier with {num_labels} labels, but {name} has "
            f"{config.num_labels}"
        )


def load_causal_lm(judge: str, weights: str, dtype, device):
    """(model, tokenizer) for greedy generation, after the architecture check."""
    from landscape.models import load_model

    name = locate(judge, weights)
    check_causal_lm(judge, name, load_config(judge, name))
    return load_model(name, dtype=dtype, device=device)


def load_classifier(judge: str, weights: str, num_labels: int, dtype, device):
    """(model, tokenizer) of a sequence classifier, after the architecture check."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    name = locate(judge, weights)
    check_classifier(judge, name, load_config(judge, name), num_labels)
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, dtype=torch_dtype if torch_dtype is not None else "auto"
        )
    except (OSError, ValueError) as e:
        raise LandscapeError(f"{judge} judge: cannot load {name}: {e}".splitlines()[0]) from e
    model.to(dev)
    model.eval()
    log.info("loaded %s judge from %s (%s on %s)", judge, name, model.dtype, dev)
    return model, tokenizer


def batched(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@torch.inference_mode()
def greedy_continuations(
    model, tokenizer, texts: list[str], max_new_tokens: int, add_special_tokens: bool
) -> list[str]:
    """The greedy continuation of each text (one batch, left padded), special tokens dropped."""
    tokenizer.padding_side = "left"
    enc = tokenizer(
        texts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
    ).to(model.device)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    new = out[:, enc["input_ids"].shape[1] :]
    return tokenizer.batch_decode(new, skip_special_tokens=True)


def check_batch_size(judge: str, batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise LandscapeError(f"{judge} judge: batch size must be at least 1, got {batch_size}")
    return batch_size


class HFJudge(Judge):
    """A judge that runs a Hugging Face model: the batch size checked before the weights
    are loaded (so a bad one fails at once), the model and tokenizer, and the weights'
    name. Subclasses set `name`; classifiers override `_load`."""

    def __init__(
        self, weights: str, batch_size: int = 8, dtype: str = "auto", device: str = "auto"
    ):
        self.batch_size = check_batch_size(self.name, batch_size)
        self.weights = weights
        self.model, self.tokenizer = self._load(weights, dtype, device)

    def _load(self, weights: str, dtype: str, device: str):
        return load_causal_lm(self.name, weights, dtype, device)

    def _batches(self, items: list):
        """`items` in batches of `batch_size`, behind a progress bar named after the judge."""
        return tqdm(list(batched(items, self.batch_size)), desc=self.name, leave=False)

    def _continuations(self, texts: list[str]) -> list[str]:
        """The model's answer to each text, batch by batch (`_generate` answers one batch)."""
        return [out for batch in self._batches(texts) for out in self._generate(batch)]

    def _generate(self, texts: list[str]) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} does not generate")

    def _warn_unparsed(self, details: list[dict], expected: str) -> None:
        bad = sum(not d["parsed"] for d in details)
        if bad:
            # the subclass's logger, so that a caller filtering one judge's module sees it
            logging.getLogger(type(self).__module__).warning(
                "%s: %d of %d outputs were neither %s", self.name, bad, len(details), expected
            )
