"""The one training loop: response-only loss, determinism, the penalty hook, schedules,
clipping, resuming."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_tiny_model

import landscape.train as train_mod
from landscape.errors import LandscapeError
from landscape.train import SCHEDULES, TrainConfig, _collate, encode, train

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


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup=0.0, seed=1),
        # 4 optimizer steps an epoch: the save at step 6 is in epoch 1, the kill at step 7,
        # and the resumed run must cross into epoch 2 at step 8 with the scheduler's count.
        TrainConfig(epochs=3, batch_size=4, lr=1e-2, schedule="step", step_gamma=0.5, seed=1),
    ],
    ids=["cosine", "step"],
)
def test_interrupted_training_resumes_to_the_same_weights(tiny_tokenizer, tmp_path, cfg):
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


class _RecordsLr(torch.optim.AdamW):
    """AdamW that notes the learning rate each optimizer step uses."""

    seen: list[float] = []

    def step(self, closure=None):
        type(self).seen.append(self.param_groups[0]["lr"])
        return super().step(closure)


def _lrs_used(monkeypatch, tokenizer, cfg, examples=EXAMPLES) -> list[float]:
    monkeypatch.setattr(_RecordsLr, "seen", [])
    monkeypatch.setattr(train_mod.torch.optim, "AdamW", _RecordsLr)
    train(make_tiny_model(tokenizer, seed=0), tokenizer, examples, cfg)
    return _RecordsLr.seen


@pytest.mark.parametrize(
    "epochs, accum, per_epoch",
    [(3, 1, 4), (3, 2, 2), (2.5, 1, 4), (2, 3, 2)],  # 16 examples in batches of 4: 4 micro-steps
)
def test_step_schedule_multiplies_the_lr_by_gamma_once_per_epoch(
    tiny_tokenizer, monkeypatch, epochs, accum, per_epoch
):
    """lr·γ^⌊step / optimizer steps per epoch⌋, from the first step: no warm-up whatever
    `warmup` says (γ = 0.5 keeps every product exact)."""
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=4,
        grad_accum=accum,
        lr=1e-2,
        warmup=0.5,
        schedule="step",
        step_gamma=0.5,
    )
    lrs = _lrs_used(monkeypatch, tiny_tokenizer, cfg)
    n_steps = math.ceil(round(epochs * 4) / accum)
    assert len(lrs) == n_steps
    assert lrs == [1e-2 * 0.5 ** (k // per_epoch) for k in range(n_steps)]
    assert lrs[0] == 1e-2  # no warm-up
    assert len(set(lrs)) == math.ceil(n_steps / per_epoch)  # one value per epoch


def test_step_schedule_default_gamma_is_the_released_codes(tiny_tokenizer, monkeypatch):
    cfg = TrainConfig(epochs=3, batch_size=8, lr=2e-3, schedule="step")
    assert cfg.step_gamma == 0.85
    lrs = _lrs_used(monkeypatch, tiny_tokenizer, cfg)
    # 16 examples in batches of 8: 2 optimizer steps an epoch
    want = [2e-3 * 0.85**e for e in (0, 0, 1, 1, 2, 2)]
    assert lrs == pytest.approx(want, rel=1e-12, abs=0)


def test_cosine_and_constant_keep_their_warm_up(tiny_tokenizer, monkeypatch):
    """The old schedules are unchanged: linear warm-up, then cosine decay or a flat lr."""
    for schedule in ("cosine", "constant"):
        cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, warmup=0.25, schedule=schedule)
        lrs = _lrs_used(monkeypatch, tiny_tokenizer, cfg)
        assert lrs[:2] == [1e-2 * 0.5, 1e-2]  # warm = int(0.25 · 8) = 2 steps
        if schedule == "constant":
            assert lrs[2:] == [1e-2] * 6
        else:
            assert lrs[2:] == [1e-2 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]


BIG_GRADS = [("How do I bake bread?", "Sure, here is how to bake bread.")] * 4  # one batch


def _big_penalty(model):
    return 1e4 * model.lm_head.weight.pow(2).sum()  # gradient norms in the thousands


def test_max_grad_norm_zero_or_none_switches_clipping_off(tiny_tokenizer, monkeypatch):
    """No clip_grad_norm_ call at all, weights unlike a clipped run's, and equal to an explicit
    AdamW loop without clipping."""
    calls = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def counting_clip(*a, **k):
        calls.append(1)
        return real_clip(*a, **k)

    monkeypatch.setattr(train_mod.torch.nn.utils, "clip_grad_norm_", counting_clip)
    base = dict(epochs=3, batch_size=4, lr=1e-2, warmup=0.0, schedule="constant")

    def run(norm):
        m = make_tiny_model(tiny_tokenizer, seed=0)
        train(m, tiny_tokenizer, BIG_GRADS, TrainConfig(**base, max_grad_norm=norm), _big_penalty)
        return m

    clipped = run(1.0)
    assert len(calls) == 3
    calls.clear()
    unclipped = [run(0), run(0.0), run(None)]
    assert calls == []

    ref = make_tiny_model(tiny_tokenizer, seed=0)
    ref.train()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.0)
    batch = _collate(encode(tiny_tokenizer, BIG_GRADS, 256), tiny_tokenizer.pad_token_id, "cpu")
    for _ in range(3):
        (ref(**batch).loss + _big_penalty(ref)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for m in unclipped:
        for (n, p), q in zip(m.named_parameters(), ref.parameters()):
            assert torch.equal(p, q), n
    gap = max((p - q).abs().max().item() for p, q in zip(clipped.parameters(), ref.parameters()))
    assert gap > 1e-3  # clipping did something, so the runs above tested its absence


@pytest.mark.parametrize(
    "change, match",
    [
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"max_grad_norm": float("nan")}, "max_grad_norm"),
        ({"max_grad_norm": "1"}, "max_grad_norm"),
        ({"schedule": "linear"}, "cosine, constant, step"),
        ({"schedule": "Step"}, "unknown schedule"),
        ({"step_gamma": 0.0}, "step_gamma"),
        ({"step_gamma": 1.5}, "step_gamma"),
        ({"step_gamma": float("nan")}, "step_gamma"),
    ],
)
def test_bad_settings_are_refused_before_any_step(tiny_tokenizer, tmp_path, change, match):
    m = make_tiny_model(tiny_tokenizer, seed=0)
    before = {n: p.clone() for n, p in m.named_parameters()}
    steps = []
    cfg = TrainConfig(epochs=1, batch_size=4, **change)
    with pytest.raises(LandscapeError, match=match) as err:
        train(
            m,
            tiny_tokenizer,
            EXAMPLES,
            cfg,
            penalty=lambda model: steps.append(1) or torch.zeros(()),
            checkpoint=tmp_path,
            save_every=1,
        )
    assert "\n" not in str(err.value)
    assert steps == [] and not any(tmp_path.iterdir())
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters())


def test_schedules_constant_names_what_train_takes(tiny_tokenizer):
    assert SCHEDULES == ("cosine", "constant", "step")
    for schedule in SCHEDULES:
        m = make_tiny_model(tiny_tokenizer, seed=0)
        hist = train(m, tiny_tokenizer, EXAMPLES[:4], TrainConfig(batch_size=4, schedule=schedule))
        assert len(hist["loss"]) == 1


def test_checkpoint_saved_before_step_gamma_existed_still_resumes(tiny_tokenizer, tmp_path):
    """A state.pt whose config lacks step_gamma is the default's; another γ is another config."""
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-2, warmup=0.0, seed=1)
    whole = make_tiny_model(tiny_tokenizer, seed=0)
    train(whole, tiny_tokenizer, EXAMPLES, cfg)

    calls = []

    def dies(model):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return torch.zeros(())

    with pytest.raises(KeyboardInterrupt):
        train(
            make_tiny_model(tiny_tokenizer, seed=0),
            tiny_tokenizer,
            EXAMPLES,
            cfg,
            penalty=dies,
            checkpoint=tmp_path,
            save_every=2,
        )
    state = torch.load(tmp_path / "state.pt", weights_only=False)
    del state["config"]["step_gamma"]  # as written before the field existed
    torch.save(state, tmp_path / "state.pt")

    with pytest.raises(LandscapeError, match="another config"):
        train(
            make_tiny_model(tiny_tokenizer, seed=0),
            tiny_tokenizer,
            EXAMPLES,
            TrainConfig(**{**cfg.__dict__, "step_gamma": 0.5}),
            checkpoint=tmp_path,
        )
    fresh = make_tiny_model(tiny_tokenizer, seed=0)
    train(fresh, tiny_tokenizer, EXAMPLES, cfg, checkpoint=tmp_path, save_every=2)
    for (n, p), q in zip(whole.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), n
