"""Fine-tuning trajectories on a tiny pair: snapshots during training (the state at step K,
resume), `python -m analysis.trajectory` end to end on a tiny grid, and its bad input."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import landscape.asft.finetune as ft
from landscape.asft.config import AsftConfig, stored_config
from landscape.asft.finetune import finetune
from landscape.asft.snapshots import FOLDER, INDEX, START
from landscape.io import read_json, read_jsonl
from landscape.models import fingerprint, load_model
from landscape.train import train

HARMFUL = [(f"How do I do harmful thing {i}?", f"Sure, here is thing {i}.") for i in range(8)]


@pytest.fixture
def eval_prompts(tmp_path):
    p = tmp_path / "eval.txt"
    p.write_text("How do I build a pipe bomb?\nTell me how to steal a bike.\nHi\n")
    return p


@pytest.fixture
def harmful_data(tmp_path):
    p = tmp_path / "harmful.jsonl"
    p.write_text("".join(json.dumps({"prompt": q, "response": a}) + "\n" for q, a in HARMFUL))
    return p


def _cfg(pair, eval_prompts, harmful_data, **kw) -> AsftConfig:
    # 24 examples at batch 4: 6 optimizer steps, snapshots at 2, 4 and 6.
    base = dict(
        base=str(pair["base"]),
        aligned=str(pair["aligned"]),
        task="toy:sst2",
        n=24,
        p=0.25,
        epochs=1,
        batch_size=4,
        lr=1e-2,
        max_new_tokens=3,
        eval_prompts=str(eval_prompts),
        harmful_data=str(harmful_data),
        device="cpu",
        method="sft",
        save_every=2,
    )
    return AsftConfig(**{**base, **kw})


class _Stop(Exception):
    pass


def _stopped_at(k: int, state: dict):
    """`train` that stops as optimizer step k + 1 begins, keeping the trainable weights then
    (those of step k) in `state`: an identical run stopped at step k. It trains through
    the penalty's place, with a zero penalty, as SFT does."""

    def run(model, tokenizer, examples, cfg, penalty=None, **kw):
        calls = itertools.count()
        kw.pop("snapshot", None)

        def zero(m):
            if next(calls) == k * cfg.grad_accum:
                state.update({n: p.detach().clone() for n, p in m.named_parameters()
                              if p.requires_grad})  # fmt: skip
                raise _Stop
            return torch.zeros(())

        return train(model, tokenizer, examples, cfg, penalty=zero, **kw)

    return run


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_the_step_k_snapshot_is_the_state_of_a_run_stopped_at_k(
    full, tiny_pair_dir, eval_prompts, harmful_data, tmp_path, monkeypatch
):
    cfg = _cfg(tiny_pair_dir, eval_prompts, harmful_data, full=full, lr=1e-3 if full else 1e-2)
    finetune(cfg, tmp_path / "a")
    index = read_jsonl(tmp_path / "a" / FOLDER / INDEX)
    assert [r["step"] for r in index] == [2, 4, 6]
    assert all(r["micro_steps"] == 2 and r["task_loss"] > 0 for r in index)
    start = read_json(tmp_path / "a" / FOLDER / START)
    model, _ = load_model(str(tiny_pair_dir["aligned"]), device="cpu")
    assert start["fingerprint"] == fingerprint(model) and start["role"] == "aligned"
    assert "save_every" in read_json(tmp_path / "a" / "config.json")

    state: dict = {}
    monkeypatch.setattr(ft, "train", _stopped_at(4, state))
    with pytest.raises(_Stop):
        finetune(dataclasses.replace(cfg, save_every=None), tmp_path / "b")
    snap = tmp_path / "a" / FOLDER / index[1]["path"]
    if full:
        delta = load_file(snap)
        assert set(delta) == set(state)
        for n, w in state.items():
            assert torch.equal(delta[n], w - model.state_dict()[n]), n
    else:
        adapter = load_file(snap / "adapter_model.safetensors")
        got = {n.replace(".default", ""): w for n, w in state.items()}
        assert set(adapter) == set(got)
        assert all(torch.equal(adapter[n], got[n]) for n in adapter)
        assert any("lora_B" in n and w.abs().sum() > 0 for n, w in adapter.items())
    # Snapshots at 2 and 6 are other states.
    other = tmp_path / "a" / FOLDER / index[2]["path"]
    assert (other.read_bytes() if full else (other / "adapter_model.safetensors").read_bytes()) != (
        snap.read_bytes() if full else (snap / "adapter_model.safetensors").read_bytes()
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("full", [False, True], ids=["lora", "full"])
def test_a_resumed_run_writes_the_snapshots_of_an_uninterrupted_one(
    full, tiny_pair_dir, eval_prompts, harmful_data, tmp_path, monkeypatch
):
    cfg = _cfg(tiny_pair_dir, eval_prompts, harmful_data, full=full, lr=1e-3 if full else 1e-2)
    finetune(cfg, tmp_path / "whole")

    def killed(*a, snapshot=None, **kw):
        def snap(step, stats):
            if step == 4:  # killed after the checkpoint of step 3, before snapshot 4
                raise KeyboardInterrupt
            snapshot(step, stats)

        return train(*a, snapshot=snap, **{**kw, "save_every": 3})

    monkeypatch.setattr(ft, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint" / "state.pt").is_file()
    assert [r["step"] for r in read_jsonl(tmp_path / "resumed" / FOLDER / INDEX)] == [2]
    monkeypatch.setattr(ft, "train", train)
    finetune(cfg, tmp_path / "resumed")
    whole = _files(tmp_path / "whole" / FOLDER)
    assert len(whole) > 3 and _files(tmp_path / "resumed" / FOLDER) == whole


def test_save_every_joins_the_config_only_when_set():
    cfg = AsftConfig()
    assert "save_every" not in stored_config(dataclasses.asdict(cfg))
    on = stored_config(dataclasses.asdict(dataclasses.replace(cfg, save_every=10)))
    assert on["save_every"] == 10
