"""The adaptive EPL search on the toy pair agrees with the dense grid."""

from __future__ import annotations

import pytest

# --- the toy pair: the search against a dense grid ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["aligned", "harm"])
def test_toy_search_agrees_with_dense_grid(direction, toy_cache, tmp_path):
    from landscape.grid import GridConfig, run_grid

    dense = run_grid(
        GridConfig(dirs=[direction], steps=21), tmp_path / "dense", show_progress=False
    )
    found = run_grid(
        GridConfig(dirs=[direction], steps=21, epl_search=True),
        tmp_path / "search",
        show_progress=False,
    )
    step_size = 0.5 / 20
    d, f = dense["epl"][direction], found["epl"][direction]
    for side in ("neg", "pos"):
        assert abs(d[side] - f[side]) <= step_size + 1e-9, (side, d, f)
    assert found["search"]["generations"] < found["search"]["dense_generations"] / 2
