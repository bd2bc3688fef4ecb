"""bench/gpu.py at tiny shapes on CPU, as it must work before a GPU is at hand: every check
runs and says what it should, and without CUDA and without --device cpu it is one line."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
from helpers import REPO


@pytest.fixture
def gpu_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # where it finds _common
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_bench", module)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_runs_on_cpu_at_tiny_shapes(gpu_bench, tmp_path, capsys):
    threads = torch.get_num_threads()
    assert gpu_bench.main(["--device", "cpu", "--tiny", "--out", str(tmp_path / "gpu.md")]) == 0
    torch.set_num_threads(threads)
    res = json.loads((tmp_path / "gpu.json").read_text())["result"]
    assert [p["placement"] for p in res["placements"]] == ["none", "cpu", "auto"]
    assert all(p["exact_after_error"] and p["perturb_ms"] > 0 for p in res["placements"])
    assert res["placements"][1]["theta0"] == "cpu"  # streamed from host memory
    gen = {g["prompts"]: g for g in res["generation"]}
    # The planted refusals: every prompt of the refusing set stops, so its batch ends early.
    assert gen["refusing"]["cut"] == 1 and gen["refusing"]["refused"] == 1
    assert gen["refusing"]["early_positions"] < gen["refusing"]["full_positions"]
    assert 0 < gen["mixed"]["cut"] and all(g["agreement"] == 1 for g in gen.values())
    # Greedy: each refusing row leaves its batch, so the mixed set decodes fewer positions too.
    assert gen["mixed"]["early_positions"] < gen["mixed"]["full_positions"]
    assert res["memory"]["peak_bytes"] is None and res["memory"]["estimate_bytes"] > 0
    table = (tmp_path / "gpu.md").read_text()
    assert "exact after an error: ✓" in table and "early stop" in table and "vLLM" in table
    # Tensor parallelism needs two GPUs: on CPU the section says why it did not run.
    assert res["tp"] in (
        "vLLM not installed",
        "skipped: 0 GPU visible (tensor parallelism needs 2 or more)",
    )
    assert "| vLLM tensor parallel |" in table


def test_without_cuda_it_says_so_in_one_line(gpu_bench, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_bench.main(["--out", str(tmp_path / "gpu.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no CUDA device") and "--device cpu" in err[0]
    assert list(tmp_path.iterdir()) == []
