"""Where a direction comes from: the one parser of direction names and the one builder.

Names: `aligned` (θ_aligned − θ_base), `harm`/`harmful` and `benign` (a fine-tuned folder,
a peft LoRA adapter or a saved .safetensors direction, minus θ_aligned), `random` and
`random:SEED`. With no model named, the default world's pair is used, and its harmful and
benign fine-tunes are made on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from landscape.directions.builders import aligned, from_checkpoint, random
from landscape.directions.direction import Direction, Names, Source
from landscape.directions.lora import from_lora_adapter
from landscape.errors import LandscapeError

KINDS = ("aligned", "harm", "harmful", "benign", "random", "random:SEED")
# The kinds read from a fine-tune (a folder, an adapter or a direction file).
FINETUNED = ("harmful", "benign")


@dataclass(frozen=True)
class Kind:
    kind: str  # aligned | harmful | benign | random
    seed: int | None = None  # random:SEED


def parse_kind(name: str) -> Kind:
    """The kind a direction name means; `harm` is `harmful`, `random:SEED` a seeded random."""
    if name in ("aligned", "benign", "random"):
        return Kind(name)
    if name in ("harm", "harmful"):
        return Kind("harmful")
    m = re.fullmatch(r"random:(\d+)", str(name))
    if m:
        return Kind("random", int(m[1]))
    raise LandscapeError(f"unknown direction {name!r}; valid: {', '.join(KINDS)}")


def from_source(
    source: str | Path, reference_model: Source, names: Names = None, kind: str = "custom"
) -> Direction:
    """A saved `.safetensors` direction, a peft LoRA adapter folder, or a fine-tuned model
    folder (minus `reference_model`), whichever `source` is."""
    path = Path(source).expanduser()
    if not path.exists():
        raise LandscapeError(f"direction source does not exist: {path}")
    if path.suffix == ".safetensors":
        return Direction.load(path)
    if (path / "adapter_config.json").exists():
        return from_lora_adapter(path, reference_model, names, kind=kind)
    return from_checkpoint(str(path), reference_model, names, kind=kind)


def model_paths(base: str | None, aligned_model: str | None, seed: int = 0) -> tuple[str, str]:
    """(base, aligned) as given, or the default world's pair when no aligned model is named."""
    if aligned_model is not None:
        return base, aligned_model
    from landscape.world import get_world

    b, a = get_world().pair(seed)
    return str(b), str(a)


def finetune_source(
    kind: str,
    source: str | None,
    flag: str,
    seed: int = 0,
    samples: int | None = None,
    on_world: bool = True,
) -> str:
    """The folder or file a harmful/benign direction is read from: `source`, or on the
    default world (`on_world`) its fine-tune, made on demand. `flag` names the option that
    gives a source, for the error on a real pair."""
    if source is not None:
        return str(source)
    if not on_world:
        raise LandscapeError(
            f"{kind} needs {flag} (a fine-tuned folder, LoRA adapter or .safetensors direction)"
        )
    from landscape.world import get_world

    return str(get_world().finetune(kind, seed, samples))


def build(
    name: str,
    model,
    names: list[str],
    *,
    base_path: str | None = None,
    source: str | None = None,
    flag: str = "--source",
    seed: int = 0,
    samples: int | None = None,
    on_world: bool = True,
    exact: bool = True,
) -> Direction:
    """The direction `name` over `names` of `model` (the aligned model), raw (not
    normalised). `aligned` loads `base_path`; `random` uses `seed` unless the name carries
    one; `harmful`/`benign` read `source` (see `finetune_source`). Checked against `model`;
    with `exact`, a direction that covers other parameters than `names` is refused (a grid
    perturbs exactly its scope; AsFT pairs a saved direction's tensors with its modules by
    name, so a direction over more weights serves it)."""
    k = parse_kind(name)
    if k.kind == "aligned":
        from landscape.models import check_pair, load_model

        if base_path is None:
            raise LandscapeError("the aligned direction needs the base model as well (--base)")
        base, _ = load_model(base_path, dtype="float32", device="cpu")
        check_pair(base, model)
        return aligned(base, model, names)
    if k.kind == "random":
        return random(model, names, seed=seed if k.seed is None else k.seed)
    path = finetune_source(k.kind, source, flag, seed, samples, on_world)
    d = from_source(path, model, names, kind=k.kind)
    d.check(model)
    if exact and d.names != list(names):
        raise LandscapeError(
            f"the {k.kind} direction ({path}) covers other parameters than the scope"
        )
    return d
