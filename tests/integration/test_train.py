"""The one training loop: response-only loss, determinism, the penalty hook."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from landscape.train import TrainConfig, encode, train

EXAMPLES = [
    ("How do I bake bread?", "Sure, here is how to bake bread."),
    ("What is 3 + 4?", "The final answer is: 7"),
] * 8


def test_only_response_tokens_are_learned(tiny_tokenizer):
    (ids, labels), _ = encode(tiny_tokenizer, EXAMPLES[:2], max_len=256)
    n_prompt = sum(1 for x in labels if x == -100)
    assert n_prompt > 0 and labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:]
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(ids[n_prompt:], skip_special_tokens=True) == EXAMPLES[0][1]


def test_training_lowers_the_loss_and_is_deterministic(tiny_tokenizer):
    cfg = TrainConfig(epochs=6, batch_size=4, lr=1e-2, warmup=0.0, seed=3)
    a = make_tiny_model(tiny_tokenizer, seed=0)
    hist = train(a, tiny_tokenizer, EXAMPLES, cfg)
    assert sum(hist["loss"][-4:]) < 0.5 * sum(hist["loss"][:4])
    b = make_tiny_model(tiny_tokenizer, seed=0)
    train(b, tiny_tokenizer, EXAMPLES, cfg)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert not a.training


def test_penalty_is_added_and_scaled_with_accumulation(tiny_tokenizer):
    """The penalty joins the task loss, and like it is divided by the accumulation steps."""
    for accum in (1, 4):
        m = make_tiny_model(tiny_tokenizer, seed=0)
        m.register_parameter("extra", torch.nn.Parameter(torch.ones(3)))
        grads = []
        m.extra.register_hook(lambda g, grads=grads: grads.append(g.clone()))
        cfg = TrainConfig(epochs=1, batch_size=4, grad_accum=accum, lr=0.0, seed=0)
        hist = train(
            m, tiny_tokenizer, EXAMPLES, cfg, penalty=lambda model: 5.0 * model.extra.sum()
        )
        assert hist["penalty"] == [15.0] * 4
        assert len(grads) == 4
        for g in grads:
            assert torch.allclose(g, torch.full((3,), 5.0 / accum))


def test_interrupted_training_resumes_to_the_same_weights(tiny_tokenizer, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup=0.0, seed=1)
    whole = make_tiny_model(tiny_tokenizer, seed=0)
    h_whole = train(whole, tiny_tokenizer, EXAMPLES, cfg)

    calls = {"n": 0}

    def dies_at_step_7(model):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return torch.zeros(())

    part = make_tiny_model(tiny_tokenizer, seed=0)
    with pytest.raises(KeyboardInterrupt):
        train(
            part,
            tiny_tokenizer,
            EXAMPLES,
            cfg,
            penalty=dies_at_step_7,
            checkpoint=tmp_path,
            save_every=3,
        )
    assert (tmp_path / "state.pt").exists()
    fresh = make_tiny_model(tiny_tokenizer, seed=0)  # a new process: nothing kept in memory
    h_part = train(
        fresh,
        tiny_tokenizer,
        EXAMPLES,
        cfg,
        penalty=lambda m: torch.zeros(()),
        checkpoint=tmp_path,
        save_every=3,
    )
    assert h_part["loss"] == h_whole["loss"]
    for (n, p), q in zip(whole.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), n


def test_checkpoint_of_another_config_is_refused(tiny_tokenizer, tmp_path):
    from landscape.errors import LandscapeError

    m = make_tiny_model(tiny_tokenizer, seed=0)
    train(
        m,
        tiny_tokenizer,
        EXAMPLES,
        TrainConfig(epochs=2, batch_size=4),
        checkpoint=tmp_path,
        save_every=1,
    )
    with pytest.raises(LandscapeError, match="another config"):
        train(
            m,
            tiny_tokenizer,
            EXAMPLES,
            TrainConfig(epochs=2, batch_size=4, lr=0.5),
            checkpoint=tmp_path,
        )
