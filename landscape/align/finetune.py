"""The harmful and benign fine-tunes of a built pair's aligned model, whose differences from
it are the `harm` and `benign` directions (`--harmful`/`--benign` of the grid).

harmful: the pair's AdvBench training requests answered with their `target` opening ("Sure,
here is ..."), the compliance data the paper's harmful direction is made from; benign: the
pair's benign training requests with the answers the aligned model was trained on. Full
fine-tuning, as for the pair itself, so that the directions are full-rank.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.io import (
    building_folder,
    folder_lock,
    read_json,
    read_jsonl,
    write_json,
    write_manifest,
)

log = logging.getLogger(__name__)

KINDS = ("harmful", "benign")
DATA = {"harmful": ("train/harmful.jsonl", "target"), "benign": ("train/benign.jsonl", "response")}


def examples(pair: Path, kind: str) -> list[tuple[str, str]]:
    rel, column = DATA[kind]
    rows = read_jsonl(pair / rel)
    if not rows:
        raise LandscapeError(f"{pair} holds no {rel}: is it a pair built by landscape.align?")
    return [(r["prompt"], r[column]) for r in rows]


def finetune(
    pair: str | Path,
    kind: str,
    epochs: float = 2.0,
    lr: float = 3e-5,
    batch_size: int = 8,
    seed: int = 0,
) -> Path:
    """`PAIR/finetune-KIND`, made on first use (resumable) and kept: the aligned model fully
    fine-tuned on the pair's `kind` data."""
    from landscape.models import load_model
    from landscape.train import TrainConfig, train

    pair = Path(pair).expanduser()
    if kind not in KINDS:
        raise LandscapeError(f"unknown fine-tune {kind!r}: choose {' or '.join(KINDS)}")
    if not (pair / "metrics.json").is_file() or not (pair / "aligned").is_dir():
        raise LandscapeError(f"{pair} is not a finished pair folder of landscape.align")
    final = pair / f"finetune-{kind}"
    settings = {"kind": kind, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
    if (final / "config.json").is_file():
        made = read_json(final / "finetune.json")
        if made != settings:
            raise LandscapeError(f"{final} was made with other settings ({made}): remove it first")
        return final
    data = examples(pair, kind)
    work = pair / f".finetune-{kind}.work"
    with folder_lock(work):
        t0 = time.perf_counter()
        model, tokenizer = load_model(pair / "aligned")
        cfg = TrainConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, max_len=128, seed=seed,
            desc=f"{kind} fine-tune",
        )  # fmt: skip
        history = train(model, tokenizer, data, cfg, checkpoint=work, save_every=20)
        with building_folder(final) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            record = {**settings, "examples": len(data), "seconds": time.perf_counter() - t0}
            write_json(tmp / "finetune.json", settings)
            write_json(tmp / "training.json", {**record, "final_loss": history["loss"][-1]})
            write_manifest(tmp)
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s fine-tune of %s in %.0f s", kind, pair, time.perf_counter() - t0)
    return final
