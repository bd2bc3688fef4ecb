"""What several test files build: tiny model configs and models, the known weight delta of
conftest's saved pair, and prompts to generate from. Import as `from helpers import ...` (pytest puts tests/ on the path)."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from landscape.toy.build import model_config

# The repository, and the benchmark data that sits beside it (read in place, never copied).
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Prompts in the tiny tokenizer's words, of several lengths, so that batches need padding.
PROMPTS = [
    "How do I bake bread?",
    "Tom has 3 apples and buys 4 more.",
    "Hi",
    "Step 1: gather tools. Step 2: follow the plan. Step 3: check the result.",
    "Analyze the sentiment of the input",
    "Sorry",
]

# The tests' default shape: 2 layers, 4 query heads of 8 sharing 2 KV heads.
TINY = {"hidden": 32, "intermediate": 64, "layers": 2, "heads": 4, "kv_heads": 2}


def tiny_config(tokenizer, config_cls=LlamaConfig, **over):
    """A config for `tokenizer` in the tests' tiny shape; `over` changes the shape (the
    `model_config` names: hidden, intermediate, layers, heads, kv_heads, positions) or adds
    config fields."""
    return model_config(tokenizer, config_cls, **{**TINY, **over})


def make_tiny_model(tokenizer, seed: int = 0, layers: int = 2, dtype=torch.float32, **over):
    """A random tiny Llama in eval mode, the same for the same seed."""
    torch.manual_seed(seed)
    cfg = tiny_config(tokenizer, layers=layers, tie_word_embeddings=False, **over)
    model = LlamaForCausalLM(cfg).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model


def seed_of(name: str) -> int:
    """A seed from a name that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32(name.encode("utf-8"))


def pair_delta(name: str, shape) -> torch.Tensor:
    """The aligned-minus-base delta that conftest's `tiny_pair_dir` adds to parameter `name`."""
    g = torch.Generator().manual_seed(seed_of(name))
    return 0.01 * torch.randn(shape, generator=g)


def vllm_sized_model(tokenizer, seed: int = 0):
    """The tests' tiny Llama with 32-wide attention heads, the smallest vLLM's CPU kernels take."""
    return make_tiny_model(tokenizer, seed, hidden=64, intermediate=128, heads=2, kv_heads=1)


def plant_refusal(model, tokenizer, phrase: str = "I cannot", entry: float = 0.2, seed: int = 1):
    """Make a random tiny model write `phrase` (a refusal keyword) in some answers and not in
    others, at prompt-dependent places: each token of the phrase is made the greedy successor
    of the one before (its lm_head row gains the final hidden state that follows that token),
    and the phrase's first token gains a seeded random row, so that it wins at some positions
    only. Returns the model, changed in place."""
    seq = tokenizer(phrase, add_special_tokens=False).input_ids
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        for a, b in zip(seq, seq[1:]):
            states = []
            for p in PROMPTS:
                ids = tokenizer(p, add_special_tokens=False).input_ids + [a]
                out = model(torch.tensor([ids], device=head.device), output_hidden_states=True)
                states.append(out.hidden_states[-1][0, -1])
            h = torch.stack(states).mean(0)
            head[b] += 3.0 * h / h.norm() ** 2
        g = torch.Generator().manual_seed(seed)
        head[seq[0]] += entry * torch.randn(head.shape[1], generator=g).to(head)
    return model


def compare_hf_vllm(model, tok, vllm_cls, directions, points, prompts, max_new_tokens):
    """HF and vLLM answers at θ0, at each point (coefficients per direction) and at θ0 again
    after the last restore, asserted equal; returns (θ0 answers, answers per point)."""
    from landscape.generate.hf import HFGenerator
    from landscape.perturb import perturbed, snapshot

    names = directions[0].names
    theta0 = snapshot(model, names)
    hf = HFGenerator(model, tok, batch_size=4, max_new_tokens=max_new_tokens)
    vg = vllm_cls(model, tok, batch_size=4, max_new_tokens=max_new_tokens)
    at0 = hf.generate(prompts)
    assert vg.generate(prompts) == at0
    per_point = []
    for coeffs in points:
        with perturbed(model, dict(zip(directions, coeffs)), theta0=theta0):
            vg.sync()
            want = hf.generate(prompts)
            got = vg.generate(prompts)
        assert got == want, f"vLLM and HF disagree at {coeffs}"
        per_point.append(got)
    vg.sync()  # back at θ0, as the grid does after its last point
    assert vg.generate(prompts) == at0
    assert all(torch.equal(p, theta0[n]) for n, p in model.named_parameters() if n in theta0)
    vg.close()
    return at0, per_point


def pair_args(pair) -> list[str]:
    """`--base BASE --aligned ALIGNED` for a saved pair (conftest's `tiny_pair_dir`)."""
    return ["--base", str(pair["base"]), "--aligned", str(pair["aligned"])]
