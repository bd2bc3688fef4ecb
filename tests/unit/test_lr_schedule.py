"""The learning-rate multiplier of the training loop: the step schedule's γ^epoch, and cosine
and constant exactly as they were before it existed."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from landscape.train import SCHEDULES, TrainConfig, _lr_factor

FAST = settings(max_examples=200, deadline=None)


def old_factor(step: int, total: int, warmup: float, schedule: str) -> float:
    """`_lr_factor` as it was before the step schedule, copied verbatim: the pin."""
    warm = max(1, int(warmup * total))
    if step < warm:
        return (step + 1) / warm
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@FAST
@given(
    total=st.integers(1, 5000),
    frac=st.floats(0, 1),
    warmup=st.floats(0, 1),
    schedule=st.sampled_from(["cosine", "constant"]),
    per_epoch=st.integers(1, 100),
)
def test_cosine_and_constant_are_unchanged(total, frac, warmup, schedule, per_epoch):
    step = min(total - 1, int(frac * total))
    cfg = TrainConfig(warmup=warmup, schedule=schedule, step_gamma=0.5)
    want = old_factor(step, total, warmup, schedule)
    assert _lr_factor(step, total, cfg) == want  # the old three-argument call
    assert _lr_factor(step, total, cfg, per_epoch) == want  # steps per epoch is ignored


@FAST
@given(
    per_epoch=st.integers(1, 50),
    epochs=st.integers(1, 20),
    gamma=st.floats(0.01, 1),
    warmup=st.floats(0, 1),
    data=st.data(),
)
def test_step_schedule_is_gamma_to_the_epoch_without_warm_up(
    per_epoch, epochs, gamma, warmup, data
):
    total = per_epoch * epochs
    step = data.draw(st.integers(0, total - 1))
    cfg = TrainConfig(warmup=warmup, schedule="step", step_gamma=gamma)
    got = _lr_factor(step, total, cfg, per_epoch)
    assert got == gamma ** (step // per_epoch)
    assert _lr_factor(0, total, cfg, per_epoch) == 1.0  # no warm-up, whatever `warmup`
    # flat within an epoch, one factor of γ at each epoch's first step
    first = (step // per_epoch) * per_epoch
    assert _lr_factor(first, total, cfg, per_epoch) == got
    if step + 1 < total:
        nxt = _lr_factor(step + 1, total, cfg, per_epoch)
        if (step + 1) % per_epoch == 0:
            assert math.isclose(nxt, got * gamma, rel_tol=1e-12)
        else:
            assert nxt == got


def test_schedules_are_the_three():
    assert SCHEDULES == ("cosine", "constant", "step")
