"""The fine-tuning methods, each declared once: what data it mixes, which direction it
anchors to, the penalty it trains with and the step it takes after training.

- `sft`: the task and the poisoned share, no penalty;
- `asft`: the AsFT penalty keeps the update near the alignment direction;
- `asft-alt`: no base model needed: the update's component along a harmful direction is
  penalised (the inside of the variant's subspace);
- `safelora`: SFT, then the adapter's B projected per module, post hoc (Safe LoRA);
- `safeinstr`: SFT with a share of harmful-request → refusal examples mixed in;
- `lisa-aligned` (also `lisa`) and `lisa-base`: Lisa's bi-state optimisation (landscape.asft.lisa)
  fine-tuning the aligned model, or the pair's base model in its place;
- `bea`: SafeInstr's refusals, each with a secret trigger as its system prompt, and the
  trigger in the system turn at evaluation (landscape.asft.bea).

Every method trains with the one loop in `landscape.train`; they differ only in what this
registry says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from landscape.errors import LandscapeError


def alt_variant(variant: str) -> str:
    """AsFT-Alt penalises the inside of the harmful direction's subspace."""
    core = variant.split("+")[0]
    if core == "l2":  # the isotropic control has no inside or outside
        return core
    return (
        core
        if core.startswith("along-")
        else "along-" + ("flat" if core in ("flat", "safelora") else core)
    )


def _same(variant: str) -> str:
    return variant


def _safelora_step(model, direction, cfg) -> dict:
    from landscape.asft.safelora import safelora_project

    return safelora_project(model, direction, cfg.safelora_threshold, cfg.safelora_k)


@dataclass(frozen=True)
class Method:
    """One method. `anchor`: the direction it needs (`aligned`, `harmful` or None);
    `penalty`: --variant → the variant it trains with (None: no penalty); `mixes_refusals`:
    --safety-share of refusals in the data; `post_hoc(model, direction, cfg) -> dict`: a step
    after training, its report kept in result.json under the method's name. `start`: the
    model fine-tuned (`aligned`, or the pair's `base`); `alternates`: Lisa's alternation of
    alignment and fine-tuning steps; `trigger`: BEA's secret system prompt on its refusals
    and at evaluation."""

    name: str
    anchor: str | None = None
    penalty: Callable[[str], str] | None = None
    mixes_refusals: bool = False
    post_hoc: Callable[..., dict] | None = None
    start: str = "aligned"
    alternates: bool = False
    trigger: bool = False


_REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft"),
        Method("asft", anchor="aligned", penalty=_same),
        Method("asft-alt", anchor="harmful", penalty=alt_variant),
        Method("safelora", anchor="aligned", post_hoc=_safelora_step),
        Method("safeinstr", mixes_refusals=True),
        # The AsFT paper's "Lisa-aligned"; `lisa` is the same run (the released code's setting,
        # which fine-tunes a model aligned beforehand).
        Method("lisa", alternates=True),
        Method("lisa-aligned", alternates=True),
        Method("lisa-base", start="base", alternates=True),
        Method("bea", mixes_refusals=True, trigger=True),
    )
}
METHODS = tuple(_REGISTRY)


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise LandscapeError(f"unknown method {name!r}; valid: {', '.join(METHODS)}")
    return _REGISTRY[name]


def target_names(model, modules: list[str]) -> list[str]:
    """The 2-D weights of `model` that the run trains: those of the named modules."""
    names = [
        n
        for n, p in model.named_parameters()
        if p.ndim == 2 and any(n.endswith(f"{m}.weight") for m in modules)
    ]
    if not names:
        raise LandscapeError(f"no weights named {', '.join(modules)} in the model")
    return names


def parse_anchor(spec: str | None) -> int | None:
    """`random:SEED` -> SEED; None (the method's own direction) -> None."""
    if spec is None:
        return None
    kind, colon, seed = spec.partition(":")
    if kind != "random" or not colon or not seed.isdigit():
        raise LandscapeError(
            f"--anchor takes random:SEED (a seeded random control direction), got {spec!r}"
        )
    return int(seed)


def norm_matched_random(direction, seed: int):
    """The random-direction control of an anchor: a seeded Gaussian tensor for each of
    `direction`'s tensors, rescaled to that tensor's norm, so that only its orientation
    differs (a penalty such as safelora depends on d's scale too). For subspace:k its top-k
    singular subspace is a uniformly random k-dimensional one: a Gaussian matrix's singular
    vectors are Haar-distributed."""
    from landscape import directions as D

    r = D.random(direction.tensors, list(direction.tensors), seed=seed)
    tensors = {}
    for name, t in r.tensors.items():
        want, have = direction.tensors[name].norm(), t.norm()
        tensors[name] = t * (want / have) if have > 0 else t
    meta = {**direction.meta, "kind": "random", "seed": seed, "matched_to": direction.meta["kind"]}
    return D.Direction(tensors, meta)


def anchor_direction(kind: str, cfg, model, names: list[str]):
    """The `aligned` or `harmful` direction over `names` of the aligned `model`: the pair's
    difference, or the harmful fine-tune of --harmful (on the default world's pair, its own,
    made on demand); with `cfg.anchor` = random:SEED, its norm-matched random control."""
    from landscape import directions as D

    # The world's pair and fine-tunes are those of --pair-seed whatever --seed: --seed is the
    # training seed, not a choice of models.
    base_path, _ = D.model_paths(cfg.base, cfg.aligned, seed=cfg.pair_seed)
    own = D.build(
        kind,
        model,
        names,
        base_path=base_path,
        source=cfg.harmful,
        flag="--harmful",
        seed=cfg.pair_seed,
        on_world=cfg.on_world,
        exact=False,  # a saved direction over more weights than --target-modules serves
    )
    seed = parse_anchor(getattr(cfg, "anchor", None))
    return own if seed is None else norm_matched_random(own, seed)
