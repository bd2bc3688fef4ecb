"""`python -m landscape.directions save|stream|samples ...`: directions saved to .safetensors
files, for tables and for `--harmful`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from landscape.cli import Parser, run_cli
from landscape.directions.builders import from_checkpoint, random
from landscape.directions.sources import FINETUNED, build, model_paths, parse_kind
from landscape.errors import LandscapeError
from landscape.io import check_writable


def _check_common(a) -> None:
    from landscape import scope
    from landscape.checks import in_range

    in_range(a.seed, "--seed", ge=0)
    scope.check(a.scope)


def save_direction(a) -> Path:
    """`save`: one direction of a model pair (or a model) into a .safetensors file; every
    input is checked before a model is loaded."""
    from landscape import scope
    from landscape.models import load_model

    if a.out.suffix != ".safetensors":
        raise LandscapeError(f"--out must end in .safetensors, got {a.out}")
    _check_common(a)
    check_writable(a.out, file=True)
    kind = parse_kind(a.kind).kind
    on_world = a.aligned is None
    if kind in FINETUNED and a.source is None and not on_world:
        raise LandscapeError(f"{kind} needs --source (fine-tuned folder, LoRA adapter)")
    if kind == "aligned" and a.base is None and not on_world:
        raise LandscapeError("the aligned direction needs --base as well as --aligned")
    if a.samples is not None and (a.source is not None or not on_world):
        raise LandscapeError("--samples makes a toy fine-tune; it does not go with --source")
    base_path, aligned_path = model_paths(a.base, a.aligned, a.seed)
    model, _ = load_model(aligned_path, dtype="float32", device="cpu")
    names = scope.select(model, a.scope)
    d = build(
        a.kind,
        model,
        names,
        base_path=base_path,
        source=a.source,
        seed=a.seed,
        samples=a.samples,
        on_world=on_world,
    )
    if a.samples is not None:
        d.meta["samples"] = a.samples
    return d.save(a.out)


def sample_directions(a) -> list[Path]:
    """`samples`: on the default world, the aligned direction, harmful directions from
    fine-tunes on N samples, and one random direction per N (seed N), each saved as
    DIR/<kind>-n<N>.safetensors."""
    from tqdm.auto import tqdm

    from landscape import scope
    from landscape.models import load_model
    from landscape.world import get_world

    if any(n < 1 for n in a.samples):
        raise LandscapeError(f"--samples must be positive, got {a.samples}")
    _check_common(a)
    check_writable(a.out)
    world = get_world()
    base_path, aligned_path = model_paths(None, None, a.seed)
    model, _ = load_model(aligned_path, dtype="float32", device="cpu")
    names = scope.select(model, a.scope)
    a.out.mkdir(parents=True, exist_ok=True)
    written = [
        build("aligned", model, names, base_path=base_path).save(a.out / "aligned.safetensors")
    ]
    for n in tqdm(a.samples, desc="harmful fine-tunes"):
        d = from_checkpoint(str(world.finetune("harmful", a.seed, n)), model, names, kind="harmful")
        d.meta["samples"] = n
        written.append(d.save(a.out / f"harm-n{n}.safetensors"))
        r = random(model, names, seed=n)
        r.meta["samples"] = n
        written.append(r.save(a.out / f"random-n{n}.safetensors"))
    return written


def stream_direction(a) -> Path:
    """`stream`: after − before read tensor by tensor from two model folders' safetensors,
    optionally normalised against the after model, written without loading either model."""
    from landscape import scope
    from landscape.directions.direction import NORMS
    from landscape.directions.stream import stream_delta

    if a.out.suffix != ".safetensors":
        raise LandscapeError(f"--out must end in .safetensors, got {a.out}")
    if a.norm not in NORMS:
        raise LandscapeError(f"unknown --norm {a.norm!r}; valid: {', '.join(NORMS)}")
    scope.check(a.scope)
    for flag, folder in (("--aligned", a.aligned), ("--base", a.base)):
        if not (Path(folder) / "config.json").is_file():
            raise LandscapeError(f"{flag} {folder} is not a model folder (no config.json)")
    check_writable(a.out, file=True)
    return stream_delta(a.aligned, a.base, a.out, scope=a.scope, norm_mode=a.norm, kind=a.kind)


def parser() -> Parser:
    p = Parser(prog="python -m landscape.directions", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "save",
        help="one direction: aligned, harmful, benign, random[:SEED]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("kind", help="aligned | harm | harmful | benign | random | random:SEED")
    s.add_argument("--out", type=Path, required=True, help="FILE.safetensors")
    s.add_argument("--base", help="base model (default: the toy pair)")
    s.add_argument("--aligned", help="aligned model (default: the toy pair)")
    s.add_argument("--source", help="harmful/benign: fine-tuned folder or LoRA adapter")
    s.add_argument("--samples", type=int, help="toy harmful/benign: fine-tune on N samples")
    s.add_argument("--scope", default="blocks")
    s.add_argument("--seed", type=int, default=0)
    t = sub.add_parser(
        "stream",
        help="aligned − base tensor by tensor from the folders' safetensors, no model loaded "
        "(memory: a few copies of the largest tensor)",
    )
    t.add_argument("--base", required=True, help="model folder (safetensors) subtracted")
    t.add_argument("--aligned", required=True, help="model folder (safetensors) minus --base")
    t.add_argument("--out", type=Path, required=True, help="FILE.safetensors")
    t.add_argument("--scope", default="blocks")
    t.add_argument("--norm", default="none", help="none, unit, model, layer or filter")
    t.add_argument("--kind", default="aligned", help="the kind recorded in the file's meta")
    m = sub.add_parser(
        "samples",
        help="toy world: harmful directions from fine-tunes on N samples, beside random ones",
    )
    m.add_argument("--samples", nargs="+", type=int, default=[10, 20, 50, 100, 200, 500])
    m.add_argument("--out", type=Path, required=True, help="folder for the .safetensors files")
    m.add_argument("--scope", default="blocks")
    m.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    a = parser().parse_args(argv)

    def work() -> list[Path]:
        if a.cmd == "stream":
            return [stream_direction(a)]
        return [save_direction(a)] if a.cmd == "save" else sample_directions(a)

    written = run_cli(work)
    if written is None:
        return 2
    for w in written:
        print(w)
    if a.cmd == "samples":
        print(
            f"cosine tables: python -m analysis.tables {a.out}/*.safetensors "
            f"--against {a.out}/aligned.safetensors --per-layer"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
