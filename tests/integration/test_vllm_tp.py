"""vLLM at tensor parallel size 2 with the perturbation inside the workers, on vLLM's CPU
backend: each rank's shards are bitwise the slices of the HF path's perturbed weights,
greedy answers equal HF's, the origin restores θ0 exactly, the prefix cache is really
emptied, both routes (in place with CPU linears unpacked, and the reload_weights fallback)
answer alike, and a toy grid at TP 2 writes the points of TP 1.

Runs where vLLM is installed (`bash .ci/vllm`); skipped elsewhere. Each engine start takes
15-40 s on 2 cores, so the module starts three."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import PROMPTS, make_tiny_model

pytest.importorskip("vllm", reason="vLLM is not installed here (`bash .ci/vllm` makes it)")

from landscape import directions as D  # noqa: E402
from landscape import scope  # noqa: E402
from landscape.errors import LandscapeError  # noqa: E402
from landscape.generate.hf import HFGenerator  # noqa: E402
from landscape.judges.keyword import KeywordJudge  # noqa: E402
from landscape.perturb import perturbed, snapshot  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="TP 2 needs 2 CPU cores"),
]

POINTS = [(0.5, 0.0), (-0.4, 0.3), (0.2, -0.6)]
# Longer than a KV block (128 tokens on CPU): asked again after a change, a stale prefix
# cache would serve their first block from the old weights.
LONG = [" ".join([p] * 6) for p in PROMPTS[:3]]
ASKED = PROMPTS + LONG
MAX_NEW = 10


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, tmp_path_factory):
    """A tiny random Llama (head_dim 32, 2 heads and 2 KV heads) saved as a model folder,
    two layer-normalised random directions saved beside it, and HF's answers at θ0 and at
    each point."""
    folder = tmp_path_factory.mktemp("tp") / "model"
    model = make_tiny_model(
        tiny_tokenizer, seed=4, hidden=64, intermediate=128, heads=2, kv_heads=2
    )
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    names = scope.select(model, "blocks")
    dirs = [D.random(model, names, seed=s).normalized("layer", model) for s in (1, 2)]
    paths = [d.save(folder.parent / f"d{i}.safetensors") for i, d in enumerate(dirs)]
    hf = HFGenerator(model, tiny_tokenizer, batch_size=4, max_new_tokens=MAX_NEW)
    theta0 = snapshot(model, names)
    want, weights = {}, {}
    for c in [(0.0, 0.0), *POINTS]:
        with perturbed(model, dict(zip(dirs, c)), theta0=theta0):
            want[c] = hf.generate(ASKED)
            weights[c] = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(want[c] != want[(0.0, 0.0)] for c in POINTS)  # the points answer otherwise
    return {"folder": folder, "tok": tiny_tokenizer, "paths": paths, "want": want, "w": weights}


def _engine(tiny, **kw):
    from landscape.generate.vllm_tp import VllmTPGenerator

    return VllmTPGenerator(
        tiny["folder"],
        tiny["tok"],
        tiny["paths"],
        tensor_parallel_size=2,
        batch_size=4,
        max_new_tokens=MAX_NEW,
        **kw,
    )


def _expected_shard(w: dict, name: str, rank: int) -> torch.Tensor:
    """Rank `rank`'s slice of vLLM's fused/split Llama parameter `name`, from HF tensors."""
    layer = name.removesuffix(".weight").rpartition(".")[0]
    if name.endswith("qkv_proj.weight"):
        parts = [w[f"{layer}.{p}_proj.weight"].chunk(2, 0)[rank] for p in "qkv"]
        return torch.cat(parts, 0)
    if name.endswith("gate_up_proj.weight"):
        parts = [w[f"{layer}.{p}_proj.weight"].chunk(2, 0)[rank] for p in ("gate", "up")]
        return torch.cat(parts, 0)
    return w[name].chunk(2, 1)[rank]  # o_proj, down_proj: split along their inputs


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_in_place_shards_answers_origin_and_cache(tiny):
    gen = _engine(tiny, unpack=True, route="in-place")
    try:
        assert gen.route == "in-place" and gen.reason is None
        zero = (0.0, 0.0)
        at0 = gen.generate(ASKED)  # asked before any change: cached by the engine
        assert at0 == tiny["want"][zero]
        judge = KeywordJudge()
        for c in POINTS:
            with gen.perturbed(c):
                gen.sync()
                got = gen.generate(ASKED)
                states = gen.worker_state()
            # The long prompts were answered before the change; the new weights answer now.
            assert got == tiny["want"][c], c
            assert judge.judge(ASKED, got) == judge.judge(ASKED, tiny["want"][c])
            assert sorted(s["rank"] for s in states) == [0, 1]
            for s in states:
                assert len(s["live"]) == 8  # qkv, o, gate_up, down in each of 2 layers
                for name, shard in s["live"].items():
                    assert _bits_equal(shard, _expected_shard(tiny["w"][c], name, s["rank"]))
                    assert _bits_equal(
                        s["theta0"][name], _expected_shard(tiny["w"][zero], name, s["rank"])
                    )
        gen.sync()  # back at the origin
        assert gen.generate(ASKED) == at0
        for s in gen.worker_state():
            assert all(_bits_equal(s["live"][n], s["theta0"][n]) for n in s["live"])
        # A point of non-finite weights is refused, and the engine stays at θ0.
        with pytest.raises(LandscapeError, match="non-finite weights"):
            gen.set_point([float("inf"), 0.0])
        assert gen.generate(ASKED) == at0
    finally:
        gen.close()


def test_reload_route_answers_as_hf(tiny):
    gen = _engine(tiny)  # CPU prepacking: the checks send it to reload_weights
    try:
        assert gen.route == "reload" and "prepacking" in gen.reason
        at0 = gen.generate(ASKED)
        assert at0 == tiny["want"][(0.0, 0.0)]
        for c in POINTS:
            gen.set_point(list(c))
            assert gen.generate(ASKED) == tiny["want"][c], c
        gen.set_point([0.0, 0.0])
        assert gen.generate(ASKED) == at0
    finally:
        gen.close()


def test_toy_grid_at_tp2_writes_the_points_of_tp1(toy_cache, tmp_path):
    from landscape.grid import main as grid

    common = ["--dirs", "aligned", "harm", "--steps", "3", "--n-prompts", "8",
              "--max-new-tokens", "16", "--backend", "vllm", "--no-coherence"]  # fmt: skip
    assert grid([*common, "--out", str(tmp_path / "tp1")]) == 0
    assert grid([*common, "--tensor-parallel-size", "2", "--out", str(tmp_path / "tp2")]) == 0
    for name in ("points.jsonl", "generations.jsonl"):
        one, two = ((tmp_path / t / name).read_text() for t in ("tp1", "tp2"))
        assert one == two and one, name
    points = [json.loads(x) for x in (tmp_path / "tp1" / "points.jsonl").read_text().splitlines()]
    assert len(points) == 9 and len({p["asr"] for p in points}) > 1  # the grid has a landscape
    c1, c2 = (json.loads((tmp_path / t / "config.json").read_text()) for t in ("tp1", "tp2"))
    assert c2.pop("tensor_parallel_size") == 2 and c1 == c2
    env1, env2 = (json.loads((tmp_path / t / "env.json").read_text()) for t in ("tp1", "tp2"))
    assert env1["fingerprint_aligned"] == env2["fingerprint_aligned"]
    assert env1["fingerprint_directions"] == env2["fingerprint_directions"]
