"""A grid run from start to end: check everything, load the pair, build the directions,
then the dense grid or the search, the summary, and the after-run hooks (landscape.png)."""

from __future__ import annotations

import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch

from landscape import directions as D
from landscape import scope
from landscape.coherence import Calibration, answer_nll, calibrate, calibrate_cut
from landscape.directions.sources import FINETUNED
from landscape.errors import LandscapeError
from landscape.generate.base import cut_at_stop
from landscape.grid.adaptive import run_search
from landscape.grid.config import GridConfig, run_config, stop_at
from landscape.grid.context import RunContext
from landscape.grid.dense import run_dense
from landscape.grid.summary import judge_agreement, summarize, summarize_search
from landscape.grid.workers import start_workers, uses_workers
from landscape.io import (
    cache_dir,
    check_writable,
    folder_lock,
    read_json,
    read_jsonl,
    record_hash,
    write_json,
)
from landscape.models import fingerprint, load_model
from landscape.perturb import generation_bytes, hold, peak_memory, plan_offload, snapshot
from landscape.prompts import load_prompts
from landscape.registry import after_run
from landscape.store import CALIBRATION, GENERATIONS, RunStore
from landscape.utility import load_utility, refusal_judge

log = logging.getLogger(__name__)

# The calibration's benign prompts, at most: each is answered twice at the start, so a large
# utility file would otherwise cost many grid points' worth of generation before the first.
CALIBRATION_BENIGN = 100
# Sampling at the model's own temperature gives text at the likelihood the model itself
# assigns to what it writes: the upper range of coherent text (see landscape.coherence).
CALIBRATION_TEMPERATURE = 1.0


def calibration_benign(cfg: GridConfig) -> tuple[str, list[str]] | None:
    """The benign set whose answers join the coherence calibration, as (spec, prompts): a
    seeded sample of at most CALIBRATION_BENIGN; None with coherence off. Loaded before the
    folder is touched, so a bad spec writes nothing."""
    if not cfg.coherence:
        return None
    spec = cfg.coherence_set()
    prompts = load_utility(spec, None, cfg.seed, cfg.pair_seed).prompts
    if len(prompts) > CALIBRATION_BENIGN:
        keep = sorted(random.Random(cfg.seed).sample(range(len(prompts)), CALIBRATION_BENIGN))
        prompts = [prompts[i] for i in keep]
    return spec, prompts


def build_directions(
    cfg: GridConfig, model, base_path: str | None, names: list[str]
) -> tuple[list[D.Direction], float | None]:
    """The run's directions, normalised; the second orthogonalised against the first.
    Returns them with the cosine of the two before orthogonalisation."""
    raw = []
    for name in cfg.dirs:
        kind = D.parse_kind(name).kind
        raw.append(
            D.build(
                name,
                model,
                names,
                base_path=base_path,
                source=getattr(cfg, kind) if kind in FINETUNED else None,
                flag=f"--{kind}",
                # --seed seeds random directions; the default world's fine-tunes, like its
                # pair, are those of --pair-seed.
                seed=cfg.seed if kind == "random" else cfg.pair_seed,
                on_world=cfg.on_world,
            )
        )
    cos = None
    if len(raw) == 2:
        cos = raw[0].cosine(raw[1])
        raw[1] = raw[1].orthogonalized(raw[0], D.ORTHO_FOR_NORM[cfg.norm])
    # One at a time, each raw direction let go as soon as its normalised copy exists: at 7B a
    # direction is 26 GB, and holding all raw and normalised ones at once doubles the peak.
    dirs = []
    while raw:
        dirs.append(raw.pop(0).normalized(cfg.norm, model))
    for d, name in zip(dirs, cfg.dirs):
        d.meta["name"] = name
    return dirs, cos


def environment(model, models: dict[str, str | None]) -> dict:
    """What env.json records of the machine, the libraries and the model under test."""
    import transformers

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype),
        "threads": torch.get_num_threads(),
        "models": models,
        "fingerprint_aligned": fingerprint(model),
    }
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def check_same_models(store: RunStore, env: dict) -> None:
    """A resume must run on the models and directions the folder's points came from: their
    fingerprints are compared with the folder's env.json (folders that predate a record
    are not held to it)."""
    path = store.path("env.json")
    if not path.is_file():
        return
    old = read_json(path)
    if not isinstance(old, dict):
        raise LandscapeError(f"{path} does not hold a run's environment (a JSON object)")
    was, now = old.get("fingerprint_aligned"), env["fingerprint_aligned"]
    if was is not None and was != now:
        raise LandscapeError(
            f"{store.out_dir} holds points of another aligned model (weights {was}, now {now}): "
            "resume it on the same model, or use another --out"
        )
    for name, fp in (old.get("fingerprint_directions") or {}).items():
        if env["fingerprint_directions"].get(name, fp) != fp:
            raise LandscapeError(
                f"{store.out_dir} holds points along another {name} direction (fingerprint "
                f"{fp}, now {env['fingerprint_directions'][name]}): resume it with the same "
                "direction, or use another --out"
            )


def write_start_env(store: RunStore, env: dict) -> None:
    """env.json at a run's start, for a new folder only. A folder's env.json describes the
    processes that computed its points, so one that only looks at a finished folder (or
    resumes it) leaves it alone until it computes a point (`write_work_env`)."""
    if not store.path("env.json").is_file():
        store.write_env(env)


def write_work_env(store: RunStore, env: dict, peaks: dict) -> None:
    """env.json after a process computed points: its environment, and each peak memory the
    larger of its own and the one recorded by the processes before it."""
    path = store.path("env.json")
    old = read_json(path) if path.is_file() else {}
    merged = {k: max(v, old.get(k, v)) for k, v in peaks.items()}
    store.write_env({**env, **merged})


def _start(
    cfg: GridConfig,
    store: RunStore,
    judges,
    prompts,
    stops,
    show_progress: bool,
    utility=None,
    benign=None,
):
    """Load the pair, build and place the directions, open the run folder and write env.json.
    Returns the run's context and its env. `stops`: where answers stop early (`stop_at`);
    `utility`: the utility set (landscape.utility) or None; `benign`: the calibration's
    benign set (`calibration_benign`)."""
    if uses_workers(cfg):  # the model only in vLLM's workers (landscape.grid.workers)
        return start_workers(cfg, store, judges, prompts, stops, show_progress)
    base_path, aligned_path = D.model_paths(cfg.base, cfg.aligned, cfg.pair_seed)
    model, tokenizer = load_model(aligned_path, dtype=cfg.dtype, device=cfg.device)
    names = scope.select(model, cfg.scope)
    dirs, cos = build_directions(cfg, model, base_path, names)
    plan = plan_offload(
        model,
        names,
        len(dirs),
        cfg.offload,
        generation_bytes(model, cfg.batch_size, cfg.max_new_tokens + 256),
    )
    env = {
        **environment(model, {"base": base_path, "aligned": aligned_path}),
        "fingerprint_directions": {name: d.fingerprint() for name, d in zip(cfg.dirs, dirs)},
        "offload": plan,
    }
    check_same_models(store, env)
    gen = cfg.generator(model, tokenizer, stops)
    gen.check_lengths(
        prompts + (utility.prompts if utility else []) + (benign[1] if benign else [])
    )
    dirs = [hold(d, model, where) for d, where in zip(dirs, plan["directions"])]
    store.create()
    write_start_env(store, env)
    calibration = None
    if benign:
        calibration = _calibration(cfg, store, model, gen, prompts, benign, env)
    ctx = RunContext(
        cfg=cfg,
        store=store,
        model=model,
        dirs=dirs,
        gen=gen,
        judges=judges,
        asked=[p for p in prompts for _ in range(cfg.samples)],
        theta0=snapshot(model, names, plan["theta0"]),
        show_progress=show_progress,
        calibration=calibration,
        utility=utility,
        refusal=refusal_judge(judges),
    )
    return ctx, env, cos


def _calibration_key(cfg: GridConfig, gen, prompts, benign, env: dict) -> str:
    """Everything a calibration depends on: the unperturbed weights where they run, every
    prompt it answers, the settings that shape the answers and the thresholds, the rule."""
    ident = {
        "rule": "run+benign, run decoding+sampled",
        "sampled": CALIBRATION_TEMPERATURE,
        "model": env["fingerprint_aligned"],
        "dtype": env["dtype"],
        "device": env["device"],
        "backend": cfg.backend,
        "batch_size": cfg.batch_size,  # rounding in a batch depends on its size
        "prompts": prompts,
        "samples": cfg.samples,
        "benign": benign,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "system_prompt": cfg.system_prompt,
        "seed": cfg.seed,
        "percentile": cfg.coherence_percentile,
        "stops": list(gen.stop_at),
    }
    return record_hash(ident, 32)


def _calibration(
    cfg: GridConfig,
    store: RunStore,
    model,
    gen,
    prompts,
    benign: tuple[str, list[str]],
    env: dict,
) -> Calibration:
    """The coherence thresholds: a resumed run's calibration.json; else the same
    calibration made by an earlier run (kept in the cache under everything it depends on,
    so the curves of one model share one); else calibrated now on the unperturbed model's
    own answers to the run's prompts (each `--samples` times) and to the `benign` set, each
    answered with the run's decoding and sampled at CALIBRATION_TEMPERATURE
    (landscape.coherence says why).

    The answers are whole even when the run stops early, so that the thresholds of whole
    answers mean what they mean without it; with early stopping the same answers, cut where
    the run cuts them, calibrate the thresholds of cut answers."""
    path = store.path(CALIBRATION)
    if path.is_file():
        return Calibration.from_dict(read_json(path))
    cached = (
        cache_dir() / "calibrations" / f"{_calibration_key(cfg, gen, prompts, benign, env)}.json"
    )
    if cached.is_file():
        cal = Calibration.from_dict(read_json(cached))
        store.write_json(CALIBRATION, cal.as_dict())
        log.info("coherence thresholds of an earlier run on the same model and prompts: %s", cached)
        return cal
    cal = _calibrate_now(cfg, model, gen, prompts, benign)
    store.write_json(CALIBRATION, cal.as_dict())
    try:  # a cache that cannot be written costs the next run the pass, nothing more
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_json(cached, cal.as_dict())
    except OSError as e:
        log.warning("coherence calibration not cached (%s): %s", cached, e)
    return cal


def _calibrate_now(cfg: GridConfig, model, gen, prompts, benign) -> Calibration:
    spec, extra = benign
    asked = [p for p in prompts for _ in range(cfg.samples)] + extra
    answers = gen.generate(asked, seed=cfg.seed, stop=False)
    with gen.sampling(CALIBRATION_TEMPERATURE):
        answers += gen.generate(asked, seed=cfg.seed, stop=False)
    asked = asked + asked
    nll = answer_nll(model, gen.tokenizer, asked, answers, cfg.batch_size, cfg.system_prompt)
    cal = calibrate(nll, answers, cfg.coherence_percentile, spec, CALIBRATION_TEMPERATURE)
    if gen.stop_at:
        cuts = [cut_at_stop(a, gen.stop_at) for a in answers]
        texts = [c or "" for c in cuts]  # an empty answer is not scored
        cut_nll = answer_nll(model, gen.tokenizer, asked, texts, cfg.batch_size, cfg.system_prompt)
        cal = calibrate_cut(cal, cut_nll, cuts)
    log.info("coherence thresholds from %d unperturbed answers: %s", cal.n, cal.as_dict())
    return cal


def draws_picture(cfg: GridConfig) -> bool:
    """Whether a finished run gets its picture: a shard holds a scattering of the grid and a
    2-D search a cross, so neither does (merge draws the whole grid's)."""
    return cfg.shard is None and not (cfg.epl_search and len(cfg.dirs) == 2)


def run_grid(cfg: GridConfig, out: str | Path, show_progress: bool = True) -> dict:
    """Run (or resume) the grid into the folder `out`; returns the summary.

    Everything that can fail on bad input is checked before the folder is touched.
    """
    cfg.validate()
    out = check_writable(out)
    judges = cfg.load_judges(cfg.on_world, cfg.device)
    prompts = load_prompts(cfg.prompts, cfg.prompt_column, cfg.n_prompts, cfg.seed)
    utility = None
    if cfg.utility_prompts is not None:
        utility = load_utility(cfg.utility_prompts, cfg.n_utility, cfg.seed, cfg.pair_seed)
    benign = calibration_benign(cfg)
    stops = stop_at(cfg, judges)
    store = RunStore(out, run_config(cfg, judges))
    RunStore.check(out, store.config)

    with folder_lock(out):  # one writer per run folder, held to the end
        ctx, env, cos = _start(cfg, store, judges, prompts, stops, show_progress, utility, benign)
        cal = ctx.calibration.as_dict() if ctx.calibration else None
        if cfg.epl_search:
            results = run_search(ctx)
            summary = summarize_search(
                store.done(), cfg, results, ctx.judge, len(ctx.asked), cos, cal
            )
        else:
            run_dense(ctx)
            summary = summarize(store.done(), cfg.axes(), cfg, cos, ctx.judge, cal)
        if len(judges) > 1:
            summary["judge_agreement"] = judge_agreement(read_jsonl(store.path(GENERATIONS)))
        store.write_json("summary.json", summary)
        if ctx.timing.points:  # a look at a finished folder leaves its records alone
            write_work_env(store, env, peak_memory())
            store.write_json("timing.json", ctx.timing.as_dict())
        if draws_picture(cfg):
            after_run(out, "grid")
    return summary
