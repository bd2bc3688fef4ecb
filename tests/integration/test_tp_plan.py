"""The tensor parallel plan without vLLM: the per-GPU bytes from a config's numbers, where
the directions go, what is refused, the heads and devices rules, and the CPU binding."""

from __future__ import annotations

import pytest

from landscape.errors import LandscapeError
from landscape.generate.tp import LLAMA2_70B, check_tensor_parallel, memory_plan
from landscape.generate.vllm_tp import _cpu_groups

H, FF, L, V, KV, HD = 8192, 28672, 80, 32000, 8, 128  # Llama-2-70B


def _plan(n, gb, offload="auto"):
    return memory_plan(
        LLAMA2_70B, n, n_directions=2, gpu_bytes=gb * 1e9, dtype_bytes=2, offload=offload,
        batch_size=64, max_new_tokens=128,
    )  # fmt: skip


@pytest.mark.parametrize("n", [4, 8])
def test_the_plan_is_the_formula(n):
    p = _plan(n, 141)
    attn = H * H * 2 + H * KV * HD * 2  # q, o; k, v
    blocks = L * (attn + 3 * H * FF)  # the perturbed 2-D block matrices
    matrices = blocks + 2 * V * H  # with the embedding and lm_head (untied)
    norms = (2 * L + 1) * H  # replicated on every rank
    assert p["live_bytes"] == 2 * (matrices // n + norms)
    assert p["theta0_bytes"] == 2 * blocks // n
    assert p["direction_bytes"] == 4 * blocks // n
    assert p["kv_cache_bytes"] == 2 * L * (KV // n) * HD * 2 * 64 * (512 + 128)
    assert p["budget_bytes"] == int(0.9 * 141e9)
    # Llama-2-70B is 69B parameters: live weights are about 138 GB / n.
    assert abs(p["live_bytes"] * n / 1e9 - 138) < 1.5


def test_directions_go_where_they_fit_and_a_plan_that_cannot_is_refused():
    assert _plan(8, 141)["directions"] == ["device", "device"]
    p = _plan(8, 80)
    assert p["fits"] and p["directions"] == ["device", "host"]
    assert p["host_bytes"] == p["direction_bytes"]
    assert _plan(8, 80, "cpu")["directions"] == ["host", "host"]
    none = _plan(8, 80, "none")
    assert not none["fits"] and "--offload none" in none["why"]
    tp4 = _plan(4, 80)
    assert not tp4["fits"] and "larger tensor parallel size" in tp4["why"]
    assert _plan(4, 141)["fits"]


def test_heads_and_devices():
    check_tensor_parallel(LLAMA2_70B, 8, (8, "GPUs"))
    with pytest.raises(LandscapeError, match="does not divide the model's 64 attention heads"):
        check_tensor_parallel(LLAMA2_70B, 16, (16, "GPUs"))  # 8 KV heads
    with pytest.raises(LandscapeError, match="exceeds the 4 GPUs present"):
        check_tensor_parallel(LLAMA2_70B, 8, (4, "GPUs"))


def test_cpu_cores_are_dealt_to_the_ranks(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-7")
    assert _cpu_groups(2) == "0-3|4-7"
    assert _cpu_groups(8) == "0|1|2|3|4|5|6|7"
    with pytest.raises(LandscapeError, match="needs 16 CPU cores"):
        _cpu_groups(16)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1|2-3")
    assert _cpu_groups(2) == "0-1|2-3"
    with pytest.raises(LandscapeError, match="binds 2 ranks"):
        _cpu_groups(4)
