"""bench/early_stop.py's bound on the forward passes any schedule needs: never above what a
real schedule takes, and as high as the rows that cannot share a round force it to be."""

from __future__ import annotations

import heapq
import importlib.util
import sys

import pytest
from helpers import REPO
from hypothesis import given
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def fewest_passes():
    sys.path.insert(0, str(REPO / "bench"))  # where it finds _common
    try:
        spec = importlib.util.spec_from_file_location(
            "early_stop_bench", REPO / "bench" / "early_stop.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return module.fewest_passes


def _list_schedule(lengths: list[int], slots: int) -> int:
    """Passes when each row, in the given order, takes the first slot that is free."""
    free = [0] * slots
    for n in lengths:
        heapq.heappush(free, heapq.heappop(free) + n)
    return max(free)


@given(
    lengths=st.lists(st.integers(1, 200), min_size=1, max_size=80),
    slots=st.integers(1, 20),
    order=st.randoms(use_true_random=False),
)
def test_no_schedule_takes_fewer_passes_than_the_bound(fewest_passes, lengths, slots, order):
    order.shuffle(lengths)
    bound = fewest_passes(lengths, slots)
    assert max(lengths) <= bound <= _list_schedule(lengths, slots)
    assert bound * slots >= sum(lengths)


def test_rows_that_cannot_share_a_round_set_the_bound(fewest_passes):
    # 35 answers that run to 128 tokens on 16 slots: one slot runs three of them.
    assert fewest_passes([128] * 35 + [8] * 13, 16) == 3 * 128
    assert fewest_passes([128] * 32 + [8] * 16, 16) == 2 * 128 + 8  # the even spread
    assert fewest_passes([10] * 48, 16) == 30 == _list_schedule([10] * 48, 16)
