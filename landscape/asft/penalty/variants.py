"""AsFT penalty variants: the spec grammar `[along-](safelora | subspace:K | flat)[+one-sided]`
or `l2`, and the `Variant` it parses to (see `landscape.asft.penalty` for what each one
penalises)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from landscape.errors import LandscapeError

KINDS = ("safelora", "subspace", "flat", "l2")
SPECS_HELP = (
    "safelora, subspace:K, flat (each optionally +one-sided), along-flat, along-subspace:K, "
    "or l2 (the isotropic control, λ·Σ‖ΔW‖²)"
)


@dataclass(frozen=True)
class Variant:
    """A penalty variant: `kind` in KINDS; `k` the subspace rank; `one_sided` adds
    relu(−⟨d, ΔW⟩/‖d‖)²; `inside` penalises the component inside instead (AsFT-Alt)."""

    kind: str
    k: int | None = None
    one_sided: bool = False
    inside: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LandscapeError(f"unknown AsFT variant kind {self.kind!r}: use {SPECS_HELP}")
        if self.kind == "subspace":
            if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
                raise LandscapeError(
                    f"subspace needs a rank k >= 1, got {self.k!r}: write subspace:K, e.g. subspace:8"
                )
        elif self.k is not None:
            raise LandscapeError(f"AsFT variant {self.kind!r} takes no rank (got k={self.k})")
        if self.inside and self.kind == "safelora":
            raise LandscapeError(
                "along-safelora is not offered (Ĉ is not a projector, so inside + outside "
                "would not split ΔW): use along-flat or along-subspace:K"
            )
        if self.kind == "l2" and (self.inside or self.one_sided):
            raise LandscapeError(
                "l2 is the isotropic control: it takes neither along- nor +one-sided"
            )
        if self.inside and self.one_sided:
            raise LandscapeError(
                "+one-sided does not combine with along-*: along-* already penalises both signs"
            )

    @property
    def spec(self) -> str:
        """The canonical spec string; `parse_variant(v.spec) == v`."""
        base = f"subspace:{self.k}" if self.kind == "subspace" else self.kind
        return ("along-" if self.inside else "") + base + ("+one-sided" if self.one_sided else "")

    @property
    def needs_d(self) -> bool:
        """Whether ⟨d, ΔW⟩ is needed, so d must be kept on the device."""
        return self.kind == "flat" or self.one_sided

    @property
    def uses_direction(self) -> bool:
        """Whether the penalty depends on the anchor direction at all (l2 does not)."""
        return self.kind != "l2"

    def __str__(self) -> str:
        return self.spec


def parse_variant(spec: str | Variant) -> Variant:
    """`[along-](safelora | subspace:K | flat)[+one-sided]` or `l2` -> Variant (LandscapeError
    if bad)."""
    if isinstance(spec, Variant):
        return spec
    if not isinstance(spec, str):
        raise LandscapeError(f"an AsFT variant is a string ({SPECS_HELP}), got {spec!r}")
    s = spec.strip().lower().replace(" ", "")
    base, plus, suffix = s.partition("+")
    if plus and suffix != "one-sided":
        raise LandscapeError(
            f"unknown suffix '+{suffix}' in AsFT variant {spec!r}: the only suffix is +one-sided"
        )
    inside = base.startswith("along-")
    name, colon, karg = base.removeprefix("along-").partition(":")
    if name not in KINDS:
        raise LandscapeError(f"unknown AsFT variant {spec!r}: use {SPECS_HELP}")
    k = None
    if name == "subspace":
        if not colon:
            raise LandscapeError(
                f"AsFT variant {spec!r} needs a rank: write subspace:K (e.g. subspace:8)"
            )
        if not re.fullmatch(r"\d+", karg) or int(karg) < 1:
            raise LandscapeError(
                f"bad subspace rank in {spec!r}: write subspace:K with an integer K >= 1"
            )
        k = int(karg)
    elif colon:
        raise LandscapeError(f"AsFT variant {name!r} takes no rank, got {spec!r}")
    return Variant(name, k, one_sided=bool(plus), inside=inside)
