"""Tiny models built from a config and a locally trained tokenizer: no downloads, well under a second."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from landscape.toy.tokenizer import train_tokenizer, vocab_rows

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


def make_tiny_model(tokenizer, seed: int = 0, layers: int = 2, dtype=torch.float32):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_rows(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


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
                g = torch.Generator().manual_seed(hash(name) % 2**31)
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    paths = {}
    for tag, m in (("base", base), ("aligned", aligned)):
        d = tmp_path / tag
        m.save_pretrained(d)
        tiny_tokenizer.save_pretrained(d)
        paths[tag] = d
    return paths


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory):
    """Where the toy pair lives for slow tests: $LANDSCAPE_CACHE when set (CI sets a fresh
    one, so the build itself is tested), else a folder of this test session."""
    if not os.environ.get("LANDSCAPE_CACHE"):
        os.environ["LANDSCAPE_CACHE"] = str(tmp_path_factory.mktemp("landscape-cache"))
    return os.environ["LANDSCAPE_CACHE"]
