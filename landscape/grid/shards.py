"""Joining the folders of a sharded grid (`--shard I/N` runs) into the run folder that a
single process would have made, byte for byte."""

from __future__ import annotations

import logging
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.grid.config import config_from, parse_shard
from landscape.grid.dense import grid_points, shard_points
from landscape.grid.summary import judge_agreement, summarize
from landscape.io import check_writable, dumps_json, raw_jsonl, read_json
from landscape.registry import after_run
from landscape.store import CALIBRATION, first_difference, read_config, write_folder

log = logging.getLogger(__name__)


def _check_shards(runs: list[Path]) -> tuple[dict, int, dict[int, Path]]:
    """(the grid's config, N, shard index -> folder); each of the N shards exactly once, all
    with the same config apart from `shard`."""
    if not runs:
        raise LandscapeError("merge needs the shard folders to join")
    base = base_run = count = None
    shards: dict[int, Path] = {}
    for run in runs:
        config = read_config(run)
        if "shard" not in config:
            raise LandscapeError(
                f"{run}: not a shard (its config.json has no shard); merge joins the folders "
                "of `--shard I/N` runs"
            )
        i, n = parse_shard(config["shard"])
        rest = {k: v for k, v in config.items() if k != "shard"}
        if base is None:
            base, base_run, count = rest, run, n
        else:
            diff = first_difference(base, rest)
            if diff is not None:
                raise LandscapeError(
                    f"{run} and {base_run} ran different configs (first difference at {diff}); "
                    "the shards of one grid differ only in --shard"
                )
            if n != count:
                raise LandscapeError(
                    f"{run} is shard {i}/{n} but {base_run} is one of {count}: "
                    "the shards of one grid share N"
                )
        if i in shards:
            raise LandscapeError(
                f"{run} and {shards[i]} are both shard {i}/{n}: their points overlap"
            )
        shards[i] = run
    missing = [f"{i}/{count}" for i in range(count) if i not in shards]
    if missing:
        raise LandscapeError(
            f"shard {', '.join(missing)} missing: a merge needs all {count} shards of the grid"
        )
    return base, count, shards


def _read_shard(run: Path, i: int, n: int, axes, points: dict, gens: dict) -> tuple[dict, dict]:
    """Shard `i` of `n`'s point and generation lines (kept as read, so that the merge copies
    them byte for byte) into `points` and `gens` by key, checked: each of its points there
    exactly once, none of another shard's, the shard finished. Returns its summary and env."""
    mine = shard_points(axes, f"{i}/{n}")
    owned, grid = set(mine), set(grid_points(axes))
    for line, rec in raw_jsonl(run / "points.jsonl"):
        key = tuple(int(x) for x in rec.get("key", ()))
        if key in points:
            raise LandscapeError(f"{run}: point {list(key)} is already in a shard: points overlap")
        if key not in owned:
            where = "no point of this grid" if key not in grid else "another shard's"
            raise LandscapeError(f"{run}: point {list(key)} is {where}: points overlap")
        points[key] = (line, rec)
    left = [k for k in mine if k not in points]
    if left:
        raise LandscapeError(
            f"{run}: shard {i}/{n} has {len(mine) - len(left)} of its {len(mine)} points; "
            "finish it first (run its command again: it resumes)"
        )
    summary = read_json(
        run / "summary.json", "the shard has not finished (no summary.json); run its command again"
    )
    env = read_json(run / "env.json", "no env.json; run the shard's command again")
    for line, rec in raw_jsonl(run / "generations.jsonl"):
        key = tuple(int(x) for x in rec.get("key", ()))
        if key in owned:
            gens.setdefault(key, []).append((line, rec))
    return summary, env


def _timing(runs: list[Path]) -> dict:
    """The shards' timing.json, summed."""
    timing: dict = {}
    for run in runs:
        if (run / "timing.json").is_file():
            for name, v in read_json(run / "timing.json").items():
                timing[name] = timing.get(name, 0) + v
    return timing


def merge_runs(runs: list[str | Path], out: str | Path) -> dict:
    """Join the folders of all N shards of one grid into `out`, the run folder a single
    process would have made (same config.json, points.jsonl, generations.jsonl and
    summary.json, byte for byte; the after-run hooks, such as landscape.png, run anew).
    Returns the summary.

    Every input is checked before anything is written; `out` appears whole or not at all."""
    runs, out = [Path(r) for r in runs], Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LandscapeError(f"{out} exists and is not an empty folder; merge into a new one")
    check_writable(out)
    base, count, shards = _check_shards(runs)
    cfg = config_from(base)
    axes = cfg.axes()
    points: dict[tuple[int, ...], tuple[str, dict]] = {}
    gens: dict[tuple[int, ...], list[tuple[str, dict]]] = {}
    read = [_read_shard(shards[i], i, count, axes, points, gens) for i in range(count)]
    summaries, envs = [s for s, _ in read], [e for _, e in read]
    prints = {e.get("fingerprint_aligned") for e in envs} - {None}
    if len(prints) > 1:
        raise LandscapeError(
            "the shards ran on different aligned models (weight fingerprints "
            f"{', '.join(sorted(prints))}); rerun them on one"
        )
    for name in cfg.dirs:
        seen = {(e.get("fingerprint_directions") or {}).get(name) for e in envs} - {None}
        if len(seen) > 1:
            raise LandscapeError(
                f"the shards ran along different {name} directions (fingerprints "
                f"{', '.join(sorted(seen))}); rerun them with one"
            )

    keys = grid_points(axes)
    done = {k: points[k][1] for k in keys}
    judges = str(base["judge"]).split(",")
    cos = summaries[0].get("cosine_before_orthogonalisation")
    cal_path = shards[0] / CALIBRATION  # every shard calibrates on the same θ0 and prompts
    calibration = read_json(cal_path) if cal_path.is_file() else None
    summary = summarize(done, axes, cfg, cos, judges[0], calibration)
    if len(judges) > 1:
        summary["judge_agreement"] = judge_agreement(r for k in keys for _, r in gens.get(k, []))
    env = {
        **envs[0],
        "merged_from": [
            {"run": str(shards[i]), "shard": f"{i}/{count}", "env": envs[i]} for i in range(count)
        ],
    }
    files = {
        "config.json": dumps_json(base),
        "env.json": dumps_json(env),
        "points.jsonl": "".join(points[k][0] + "\n" for k in keys),
        "generations.jsonl": "".join(line + "\n" for k in keys for line, _ in gens.get(k, [])),
        "summary.json": dumps_json(summary),
    }
    if calibration is not None:
        files[CALIBRATION] = dumps_json(calibration)
    timing = _timing(runs)
    if timing:
        files["timing.json"] = dumps_json(timing)
    # The hooks (landscape.png) draw into the hidden folder, which then appears whole.
    write_folder(out, files, finish=lambda folder: after_run(folder, "merge"))
    log.info("merged %d shards, %d points, into %s", count, len(done), out)
    return summary
