"""The controls an AsFT effect must beat: the isotropic penalty (l2) and a norm-matched
random anchor; λ on both scales; the comparison's control runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from landscape.asft.compare import _folder, _runs
from landscape.asft.config import AsftConfig
from landscape.asft.methods import alt_variant, norm_matched_random, parse_anchor
from landscape.asft.penalty import AsftPenalty, parse_variant
from landscape.directions import Direction
from landscape.errors import LandscapeError

OUT, IN = 8, 6


class _Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(IN, OUT, bias=False)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm()


def _fit(target: torch.Tensor, direction: Direction, variant: str, lam: float) -> torch.Tensor:
    """argmin_X ‖X − T‖² + λ·pen(X), X = W − W0, found by the real penalty object and
    L-BFGS (the problem is a convex quadratic)."""
    torch.manual_seed(0)
    model = _Lin().double()
    pen = AsftPenalty.for_full(model, None, direction, variant, lam)
    w0 = model.lin.weight.detach().clone()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad()
        loss = (model.lin.weight - w0 - target).pow(2).sum() + pen(model)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return (model.lin.weight - w0).detach()


def _orthogonal_to(*dirs: torch.Tensor, seed: int) -> torch.Tensor:
    """A random tensor orthogonal to the span of `dirs` in the flattened space."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(OUT * IN, generator=g, dtype=torch.float64)
    Q = torch.linalg.qr(torch.stack([d.reshape(-1).double() for d in dirs], 1)).Q
    return (t - Q @ (Q.T @ t)).reshape(OUT, IN)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.floats(0.2, 5.0))
def test_flat_differs_from_its_controls_only_when_the_task_lies_along_d(seed, lam):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(OUT, IN, generator=g, dtype=torch.float64)
    aligned = Direction({"lin.weight": d})
    rand = norm_matched_random(aligned, seed + 1)
    r = rand.tensors["lin.weight"].double()

    along = 2.0 * _unit(d)  # the task pulls straight along d
    flat = _fit(along, aligned, "flat", lam)
    l2 = _fit(along, aligned, "l2", lam)
    ctrl = _fit(along, rand, "flat", lam)
    assert torch.allclose(flat, along, atol=1e-6)  # flat leaves d free
    assert torch.allclose(l2, along / (1 + lam), atol=1e-6)  # l2 shrinks everything
    gap = (1 - 1 / (1 + lam)) * along.norm() * 0.5
    assert (flat - l2).norm() > gap and (flat - ctrl).norm() > 0.2 * gap

    across = _orthogonal_to(d, r, seed=seed + 2)  # the task pulls orthogonally to d and r
    want = across / (1 + lam)
    for dirn, variant in ((aligned, "flat"), (aligned, "l2"), (rand, "flat")):
        assert torch.allclose(_fit(across, dirn, variant, lam), want, atol=1e-6), variant


def test_the_random_anchor_is_seeded_and_norm_matched_per_module():
    g = torch.Generator().manual_seed(0)
    own = Direction(
        {
            "a.weight": 3.0 * torch.randn(5, 4, generator=g),
            "b.weight": torch.randn(7, 3, generator=g),
        },
        {"kind": "aligned"},
    )
    r1, r2, r3 = (norm_matched_random(own, s) for s in (4, 4, 5))
    for name, t in own.tensors.items():
        assert torch.equal(r1.tensors[name], r2.tensors[name])
        assert not torch.equal(r1.tensors[name], r3.tensors[name])
        assert r1.tensors[name].norm().item() == pytest.approx(t.norm().item(), rel=1e-6)
    assert abs(own.cosine(r1)) < 0.6  # another orientation
    assert r1.meta["kind"] == "random" and r1.meta["seed"] == 4
    assert r1.meta["matched_to"] == "aligned"


def test_l2_parses_alone_and_asft_alt_keeps_it():
    assert parse_variant("l2").spec == "l2" and not parse_variant("l2").uses_direction
    for bad in ("l2+one-sided", "along-l2", "l2:3"):
        with pytest.raises(LandscapeError):
            parse_variant(bad)
    assert alt_variant("l2") == "l2"


def test_anchor_specs():
    assert parse_anchor(None) is None and parse_anchor("random:7") == 7
    for bad in ("random", "random:x", "aligned:1", "random:-1"):
        with pytest.raises(LandscapeError, match="random:SEED"):
            parse_anchor(bad)
    with pytest.raises(LandscapeError, match="sft has none"):
        AsftConfig(method="sft", anchor="random:1").validate()


@pytest.mark.parametrize(
    "kw, toolkit, released",
    [
        ({"lam": 1.0}, 1.0, 16.0),  # lora_alpha 32, r 8: s = 4
        ({"lam": 16.0, "lam_scale": "released"}, 1.0, 16.0),
        ({"lam": 2.0, "lora_r": 16}, 2.0, 8.0),  # s = 2
        ({"lam": 3.0, "lam_scale": "released", "full": True}, 3.0, 3.0),  # no s
    ],
)
def test_lambda_on_both_scales(kw, toolkit, released):
    cfg = AsftConfig(**kw)
    assert cfg.lam_toolkit == pytest.approx(toolkit)
    assert cfg.lam_released == pytest.approx(released)


def test_controls_add_l2_and_a_random_anchor_beside_every_variant(tmp_path):
    cfg = AsftConfig(seed=3)
    runs = list(_runs(cfg, ["sft", "asft"], [0.1], ["flat+one-sided", "subspace:4"], True))
    labels = [label for label, _ in runs]
    assert labels == [
        "sft",
        "asft[flat+one-sided]",
        "asft[subspace:4]",
        "asft[l2]",
        "asft[flat+one-sided]@random",
        "asft[subspace:4]@random",
    ]
    by = dict(runs)
    assert by["asft[l2]"].variant == "l2" and by["asft[l2]"].anchor is None
    assert by["asft[subspace:4]@random"].anchor == "random:3"  # the run's seed
    assert by["sft"].anchor is None
    names = {_folder(tmp_path, label, run).name for label, run in runs}
    assert len(names) == len(labels)  # one folder each
    assert "asft-subspace4-random3-p0.1" in names
    plain = [label for label, _ in _runs(cfg, ["asft"], [0.1], ["flat"], False)]
    assert plain == ["asft[flat]"]


def test_fidelity_switches_reach_the_loop_and_are_stored_only_when_set():
    import dataclasses

    from landscape.asft.config import stored_config

    tc = AsftConfig(schedule="step", step_gamma=0.5, max_grad_norm=0.0).train_config()
    assert (tc.schedule, tc.step_gamma, tc.max_grad_norm) == ("step", 0.5, 0.0)
    default = stored_config(dataclasses.asdict(AsftConfig()))
    for key in ("schedule", "step_gamma", "max_grad_norm", "anchor", "lam_scale"):
        assert key not in default  # old run folders still compare equal
    changed = stored_config(dataclasses.asdict(AsftConfig(schedule="step", anchor="random:2")))
    assert changed["schedule"] == "step" and changed["anchor"] == "random:2"


@pytest.mark.parametrize(
    "fas, noisy",
    [((0.7, 0.75), False), ((0.55, 0.56), True), ((0.4, 0.8), True), ((0.3, 0.35), False)],
)
def test_a_gain_over_before_is_flagged_when_within_noise(fas, noisy):
    from landscape.asft.table import seed_spread, spread_markdown

    befores = {0: {"fa": 0.5, "n_fa": 100}, 1: {"fa": 0.5, "n_fa": 100}}  # half-width 0.098
    rows = [
        {"method": "m", "p": 0.1, "seed": s, "hs": 0.1 * s, "fa": fa} for s, fa in enumerate(fas)
    ]
    (r,) = seed_spread(befores, rows)
    assert r["n"] == 2 and r["gain_within_noise"] is noisy
    assert r["fa_gain_mean"] == pytest.approx(sum(fas) / 2 - 0.5)
    assert (r["hs_min"], r["hs_max"]) == (0.0, 0.1)
    assert spread_markdown([r]).splitlines()[-1].endswith(" ≈ |" if noisy else "] |")
