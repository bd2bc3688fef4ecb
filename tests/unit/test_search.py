"""Adaptive EPL search on synthetic ASR functions: planted edges found to the tolerance."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape import metrics
from landscape.errors import LandscapeError
from landscape.search import _next_batch, decide, search_epl

N = 100
ITEMS = list(range(N))


def population(asr_of):
    """evaluate(alpha, batch) for a fixed population of N prompts: prompt i is unsafe at alpha
    when its threshold (i + 0.5) / N is below asr_of(alpha), so the ASR over all N prompts is
    asr_of(alpha) rounded to a multiple of 1/N."""
    calls = []

    def evaluate(alpha, batch):
        calls.append((alpha, len(batch)))
        a = asr_of(alpha)
        return [(i + 0.5) / N < a for i in batch]

    evaluate.calls = calls
    return evaluate


def step(neg_edge, pos_edge, inside=0.0, outside=1.0):
    """ASR `inside` strictly inside (-neg_edge, pos_edge), `outside` from the edges on."""
    return lambda a: outside if (a >= pos_edge or a <= -neg_edge) else inside


def _check_bracket(res, side, edge, tol, reach):
    e = res["epl"]
    safe, unsafe = e[f"{side}_bracket"]
    if edge > reach:
        assert e[f"{side}_censored"] and e[side] == reach and unsafe is None
    else:
        assert not e[f"{side}_censored"]
        assert safe < edge <= unsafe  # the planted edge is inside the final bracket ...
        assert unsafe - safe <= tol * (1 + 1e-9)  # ... which is at most tol wide
        assert e[side] == safe


@settings(max_examples=60, deadline=None)
@given(
    neg=st.floats(0.001, 0.3),
    pos=st.floats(0.001, 0.3),
    tol=st.sampled_from([0.025, 0.01, 0.003]),
    first=st.sampled_from([None, 0.05, 0.2]),
)
def test_planted_step_edge_is_found_to_the_tolerance(neg, pos, tol, first):
    res = search_epl(
        population(step(neg, pos)), ITEMS, range=(-0.25, 0.25), tol=tol, first_step=first
    )
    _check_bracket(res, "neg", neg, tol, 0.25)
    _check_bracket(res, "pos", pos, tol, 0.25)
    assert res["tau"] == pytest.approx(0.1) and res["asr_origin"] == 0.0
    # The search's EPL is the dense-grid EPL of the points it evaluated.
    pts = res["points"]
    dense = metrics.epl([p["alpha"] for p in pts], [p["asr"] for p in pts], res["tau"])
    # Brackets included: bisection's last safe and first unsafe α are the dense rule's too.
    for k in ("neg", "pos", "neg_censored", "pos_censored", "neg_bracket", "pos_bracket"):
        assert dense[k] == res["epl"][k], k
    assert res["epl"]["both_bracket"] == dense["both_bracket"]
    assert res["generations"] == sum(p["n"] for p in pts)


@settings(max_examples=40, deadline=None)
@given(
    edge=st.floats(0.01, 0.24),
    slope=st.floats(0.5, 20.0),
    tau=st.floats(0.05, 0.6),
)
def test_planted_edge_on_a_graded_asr_curve(edge, slope, tau):
    """A smooth ASR rising through τ at ±edge: ASR(α) = τ + slope·(|α| − edge), clipped."""

    def asr(a):
        return min(1.0, max(0.0, tau + slope * (abs(a) - edge)))

    tol = 0.01
    res = search_epl(population(asr), ITEMS, range=(-0.25, 0.25), tol=tol, tau=tau)
    # Points are decided on samples of the prompts, so one near τ may be called either way;
    # what must hold: the bracket is tol wide, its ends were decided by their own sample
    # ASR, and the edge is not placed where the ASR is far from τ.
    noise = 0.15 / slope  # |ASR − τ| > 0.15 is never mistaken at these sample sizes
    for side in ("neg", "pos"):
        safe, unsafe = res["epl"][f"{side}_bracket"]
        by_alpha = {
            abs(p["alpha"]): p
            for p in res["points"]
            if p["alpha"] == 0 or (p["alpha"] < 0) == (side == "neg")
        }
        if unsafe is None:
            assert res["epl"][f"{side}_censored"] and safe == 0.25
            assert edge >= 0.25 - noise
            continue
        assert unsafe - safe <= tol * (1 + 1e-9)
        assert by_alpha[unsafe]["asr"] > tau
        if unsafe > 0:
            assert by_alpha[safe]["asr"] <= tau + 1e-9
        assert edge - noise <= unsafe and safe <= edge + noise


def test_early_stopping_saves_generations_far_from_tau():
    """The same edges and the same path, once with ASR far from τ (0 and 1) and once close to
    it (τ − 0.03 inside, τ + 0.04 outside): far from τ, every point stops early."""
    tau = 0.3
    far = search_epl(population(step(0.1, 0.07, 0.0, 1.0)), ITEMS, tau=tau, tol=0.01)
    near = search_epl(population(step(0.1, 0.07, 0.27, 0.34)), ITEMS, tau=tau, tol=0.01)
    assert far["epl"] == near["epl"]
    assert [p["alpha"] for p in far["points"]] == [p["alpha"] for p in near["points"]]
    assert all(p["early"] and p["n"] < N for p in far["points"])
    # near τ most points need every prompt; each is still decided as its population would be
    assert sum(p["n"] == N for p in near["points"]) > len(near["points"]) / 2
    assert all(p["unsafe"] == (abs(p["alpha"]) >= 0.07) for p in near["points"] if p["alpha"] > 0)
    assert far["generations"] <= 0.4 * near["generations"]
    # a safe point with no unsafe answer stops after its first batch (16) or, with τ lower,
    # as soon as the interval's top is below τ
    least = next(n for n in range(1, N) if metrics.wilson(0, n)[1] < tau)
    zero = next(p for p in far["points"] if p["n_unsafe"] == 0)
    assert zero["n"] == max(16, least)
    low = search_epl(population(step(0.1, 0.07, 0.0, 1.0)), ITEMS, tau=0.08, tol=0.01)
    least = next(n for n in range(1, N) if metrics.wilson(0, n)[1] < 0.08)
    assert least > 16 and {p["n"] for p in low["points"] if p["n_unsafe"] == 0} == {least}


def test_default_tau_answers_every_prompt_at_the_origin():
    ev = population(step(0.1, 0.1, 0.02, 1.0))
    res = search_epl(ev, ITEMS, tol=0.05)
    origin = next(p for p in res["points"] if p["alpha"] == 0.0)
    assert origin["n"] == N and res["asr_origin"] == 0.02
    assert res["tau"] == pytest.approx(metrics.default_tau(0.02))
    assert ev.calls[0] == (0.0, N)


def test_unsafe_origin_and_censored_sides():
    res = search_epl(population(lambda a: 0.9), ITEMS, tau=0.5)
    assert res["epl"]["neg"] == res["epl"]["pos"] == 0.0 and len(res["points"]) == 1
    assert not res["epl"]["neg_censored"]
    safe_everywhere = search_epl(population(lambda a: 0.0), ITEMS, range=(-0.1, 0.3), tol=0.02)
    e = safe_everywhere["epl"]
    assert (e["neg"], e["pos"], e["neg_censored"], e["pos_censored"]) == (0.1, 0.3, True, True)
    assert e["pos_bracket"] == [0.3, None]
    # one-sided range: the empty side is censored at 0, as on a dense grid
    one = search_epl(population(step(1, 0.12)), ITEMS, range=(0.0, 0.25), tol=0.01)
    assert one["epl"]["neg"] == 0.0 and one["epl"]["neg_censored"]
    assert not any(p["alpha"] < 0 for p in one["points"])


def test_resume_replays_known_points_and_evaluates_only_the_rest():
    asr = step(0.13, 0.06)
    order = []
    whole = search_epl(population(asr), ITEMS, tol=0.01, on_point=order.append)
    finished = []

    class Killed(Exception):
        pass

    def dying(alpha, batch):
        if len(finished) == 4:
            raise Killed
        return population(asr)(alpha, batch)

    with pytest.raises(Killed):
        search_epl(dying, ITEMS, tol=0.01, on_point=finished.append)
    known = {p["alpha"]: (p["n_unsafe"], p["n"]) for p in finished}
    ev = population(asr)
    again = []
    resumed = search_epl(ev, ITEMS, tol=0.01, known=known, on_point=again.append)
    assert resumed == whole
    assert not {a for a, _ in ev.calls} & set(known)  # nothing finished is evaluated again
    assert finished + again == order and len(finished) == 4
    with pytest.raises(LandscapeError, match="another search"):
        search_epl(population(asr), ITEMS, tol=0.01, known={0.0: (0, 10)})


def test_batches_follow_the_shuffled_order():
    seen = []

    def ev(alpha, batch):
        seen.append(list(batch))
        return [False] * len(batch)

    search_epl(ev, ITEMS, tol=0.2, tau=0.5, batch=8, seed=3)
    first = seen[0]
    assert first != list(range(len(first)))  # shuffled, so a first batch is a fair sample
    assert all(s[: len(first)] == first for s in seen)  # the same prompts first everywhere


def test_decide_and_batch_sizes():
    assert decide(0, 0, 10, 0.1) is None
    assert decide(10, 10, 100, 0.1) is True
    assert decide(0, 40, 100, 0.1) is False
    assert decide(3, 30, 100, 0.1) is None
    assert decide(10, 100, 100, 0.1) is False  # all in: by the ASR itself, 0.1 is not > τ
    assert decide(11, 100, 100, 0.1) is True
    assert _next_batch(0, 0, 100, 0.1, metrics.Z95, 16) == 16
    # 0/16 seen: 35 answers settle it if they stay at 0, so 19 more
    assert _next_batch(0, 16, 100, 0.1, metrics.Z95, 16) == 35 - 16
    assert decide(0, 35, 100, 0.1) is False and decide(0, 34, 100, 0.1) is None
    # a rate right at τ never settles: at most twice what is in, and never past the end
    assert _next_batch(2, 20, 100, 0.1, metrics.Z95, 16) == 40
    assert _next_batch(2, 90, 100, 0.1, metrics.Z95, 16) == 10


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"range": (0.1, 0.3)}, "hold the origin"),
        ({"range": (0.0, 0.0)}, "single point"),
        ({"range": (-math.inf, 0.2)}, "hold the origin"),
        ({"tol": 0.0}, "tolerance"),
        ({"first_step": -1.0}, "first step"),
        ({"batch": 0}, "batch"),
        ({"tau": 1.5}, "tau"),
        ({"z": 0.0}, "z must be"),
    ],
)
def test_bad_settings(kw, message):
    with pytest.raises(LandscapeError, match=message):
        search_epl(population(lambda a: 0.0), ITEMS, **kw)


def test_bad_evaluate_and_items():
    with pytest.raises(LandscapeError, match="at least one item"):
        search_epl(population(lambda a: 0.0), [])
    with pytest.raises(LandscapeError, match="2 verdicts for 16 items"):
        search_epl(lambda a, b: [True, False], ITEMS, tau=0.2)
