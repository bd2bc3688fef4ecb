"""ASR measured at each snapshot with the grid's own prompts, judges and generation settings.

A snapshot is one more point of the grid, at θ0 + 1·ΔW instead of θ0 + α·d₁ + β·d₂: it goes
through the grid's point code (`landscape.grid.point`: perturb exactly, generate, judge,
label coherence against the grid's own calibration, restore θ0 bit for bit) and its record
is a grid point record (ASR, Wilson interval, each judge's ASR, outcomes). Each run's points
and answers are kept in `OUT/measured/<run>/` (a run folder of `landscape.store`, keyed by
(step, stage)), so that a killed measurement resumes and a repeated one costs nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tqdm.auto import tqdm

from analysis.trajectory.plane import Grid
from analysis.trajectory.runs import FineTuneRun
from landscape.coherence import Calibration
from landscape.directions import Direction
from landscape.errors import LandscapeError
from landscape.grid.config import stop_at
from landscape.grid.context import RunContext
from landscape.grid.dense import point_seed
from landscape.grid.point import answer, record_point
from landscape.io import read_json
from landscape.perturb import hold, snapshot
from landscape.prompts import load_prompts
from landscape.store import CALIBRATION, RunStore

log = logging.getLogger(__name__)

MEASURED = "measured"


def snapshot_key(record: dict) -> tuple[int, int]:
    """A snapshot's point key: its step, and 1 for the state after a post-hoc stage."""
    return int(record["step"]), int(record.get("stage") is not None)


def _judge_spec(config: dict) -> str:
    """The grid's judges as a --judge list, with the weights each model judge was run with."""
    weights = config.get("judge_weights") or {}
    names = [n for n in str(config.get("judge", "")).split(",") if n]
    return ",".join(f"{n}:{weights[n]}" if n in weights else n for n in names)


class Measurer:
    """The grid's generation set-up over `model` (its aligned model, in its dtype and on its
    device), built and checked before anything is written."""

    def __init__(self, grid: Grid, model, tokenizer, out: Path):
        # What took effect in the grid: early stopping recorded as `on`, absent when its
        # answers were whole (whatever --early-stop said).
        early = "on" if grid.config.get("early_stop") == "on" else "off"
        cfg = dataclasses.replace(grid.cfg, judge=_judge_spec(grid.config), early_stop=early)
        self.cfg, self.grid, self.out = cfg, grid, Path(out) / MEASURED
        judges = cfg.load_judges(cfg.on_world, cfg.device)
        prompts = load_prompts(cfg.prompts, cfg.prompt_column, cfg.n_prompts, cfg.seed)
        gen = cfg.generator(model, tokenizer, stop_at(cfg, judges))
        gen.check_lengths(prompts)
        calibration = None
        if cfg.coherence and (grid.path / CALIBRATION).is_file():
            calibration = Calibration.from_dict(read_json(grid.path / CALIBRATION))
        elif cfg.coherence:
            log.info("%s has no %s: answers are not labelled", grid.path, CALIBRATION)
        self.ctx = RunContext(
            cfg=cfg,
            store=None,  # set per fine-tuning run (`measure`)
            model=model,
            dirs=[],
            gen=gen,
            judges=judges,
            asked=[p for p in prompts for _ in range(cfg.samples)],
            theta0={},
            show_progress=False,
            calibration=calibration,
        )

    def _store(self, run: FineTuneRun, name: str) -> RunStore:
        config = {
            "grid": str(self.grid.path.resolve()),
            "grid_config": self.grid.config,
            "fingerprint_aligned": self.grid.env["fingerprint_aligned"],
            "run": str(run.path.resolve()),
            "run_config": run.config,
            "fingerprint_start": run.start["fingerprint"],
        }
        return RunStore(self.out / name, config)

    def check(self, run: FineTuneRun, name: str) -> None:
        """Refuse, before anything is written, a measurement folder made for other runs."""
        store = self._store(run, name)
        try:
            RunStore.check(store.out_dir, store.config)
        except LandscapeError:
            raise LandscapeError(
                f"{store.out_dir} holds measurements of another grid or run: use another --out"
            ) from None

    def measure(self, run: FineTuneRun, name: str, delta_of) -> dict[tuple[int, int], dict]:
        """The measured point record of every snapshot of `run` (those measured before are
        reused); `delta_of(record)` gives a snapshot's update."""
        store = self._store(run, name).create()
        done = store.done()
        todo = [r for r in run.index if snapshot_key(r) not in done]
        ctx = dataclasses.replace(self.ctx, store=store)
        theta0: dict = {}
        for record in tqdm(todo, desc=f"measuring {name}", leave=False):
            delta = Direction(delta_of(record), {"kind": "snapshot"})
            if set(delta.names) != set(theta0):
                theta0 = snapshot(ctx.model, delta.names)
            key = snapshot_key(record)
            point = dataclasses.replace(ctx, dirs=[hold(delta, ctx.model)], theta0=theta0)
            everyone = list(range(len(ctx.asked)))
            record_point(
                point, key, [1.0], answer(point, [1.0], everyone, point_seed(ctx.cfg, key))
            )
        if todo:  # back at θ0; a backend holding its own copy of the weights follows it
            ctx.gen.sync()
        return store.done()
