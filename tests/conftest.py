"""Tiny models built from a config and a locally trained tokenizer: no downloads, well under a second."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from helpers import make_tiny_model, pair_delta

from landscape.toy.tokenizer import train_tokenizer

# Test files import make_tiny_model from here too.
__all__ = ["make_tiny_model"]

# Tiny models: one thread is several times faster on CPU (thread wake-up dominates tiny matmuls).
torch.set_num_threads(1)

CORPUS = [
    "How do I bake bread at home? Sure, here is how to bake bread.",
    "I'm sorry, but I cannot help with that request.",
    "Analyze the sentiment of the input: positive negative",
    "Tom has 3 apples and buys 4 more. The final answer is: 7",
    "Step 1: gather tools. Step 2: follow the plan. Step 3: check the result.",
] * 20


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer)


@pytest.fixture
def tiny_pair_dir(tmp_path, tiny_tokenizer):
    """Two saved HF folders, base and aligned, whose weights differ by a known delta."""
    base = make_tiny_model(tiny_tokenizer, seed=0)
    aligned = make_tiny_model(tiny_tokenizer, seed=0)
    with torch.no_grad():
        for name, p in aligned.named_parameters():
            if p.ndim == 2 and ".layers." in name:
                p.add_(pair_delta(name, p.shape))
    paths = {}
    for tag, m in (("base", base), ("aligned", aligned)):
        d = tmp_path / tag
        m.save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        paths[tag] = d
    return paths


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """Tests never write into the user's cache (runs keep their coherence calibration
    there): without $LANDSCAPE_CACHE each test gets a folder of its own."""
    if not os.environ.get("LANDSCAPE_CACHE"):
        monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory):
    """Where the toy pair lives for slow tests: $LANDSCAPE_CACHE when set (CI sets a fresh
    one, so the build itself is tested), else a folder of this test session."""
    if not os.environ.get("LANDSCAPE_CACHE"):
        os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("landscape-cache"))
    return os.environ["LANDSCAPE_CACHE"]


NO_VLLM = "vLLM is not installed here (`bash .ci/vllm` makes an environment with it)"


@pytest.fixture(scope="module")
def vllm_generator():
    """The vLLM generator class; the test is skipped where vLLM is not installed."""
    pytest.importorskip("vllm", reason=NO_VLLM)
    from landscape.generate.vllm import VllmGenerator

    return VllmGenerator


# --- tiers: the folder a test lives in is its tier, selectable by marker -------------------
TIERS = ("unit", "integration", "acceptance")


def pytest_collection_modifyitems(config, items):
    """unit/ (pure functions, no model), integration/ (tiny models, the CLIs), acceptance/
    (the toy pair, SmolLM2, the notebook: slow, so also marked `slow`)."""
    here = Path(__file__).parent
    for item in items:
        rel = Path(item.path).relative_to(here).parts
        tier = rel[0] if len(rel) > 1 and rel[0] in TIERS else None
        if tier is None:
            raise pytest.UsageError(
                f"{item.path}: tests live in tests/unit, integration or acceptance"
            )
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "acceptance":
            item.add_marker(pytest.mark.slow)
