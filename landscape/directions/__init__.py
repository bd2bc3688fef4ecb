"""Directions in weight space: named fp32 tensors, built, normalised, compared and saved.

- `direction`: the `Direction` and its algebra (normalise, orthogonalise, cosine, files);
- `builders`: `delta`, `aligned`, `random`, `from_checkpoint`;
- `lora`: `from_lora_adapter`, and `match_name`, the one rule that pairs weight names;
- `sources`: `parse_kind` (the one parser of direction names), `from_source`, `build`;
- `layers`: `layer_of`, `cosine_per_layer`.
"""

from landscape.directions.builders import aligned, delta, from_checkpoint, random
from landscape.directions.direction import (
    GRANULARITIES,
    NORMS,
    ORTHO_FOR_NORM,
    Direction,
    Names,
    Source,
)
from landscape.directions.layers import cosine_per_layer, layer_of
from landscape.directions.lora import from_lora_adapter, match_name
from landscape.directions.sources import KINDS, Kind, build, from_source, model_paths, parse_kind

__all__ = [
    "GRANULARITIES",
    "KINDS",
    "NORMS",
    "ORTHO_FOR_NORM",
    "Direction",
    "Kind",
    "Names",
    "Source",
    "aligned",
    "build",
    "cosine_per_layer",
    "delta",
    "from_checkpoint",
    "from_lora_adapter",
    "from_source",
    "layer_of",
    "match_name",
    "model_paths",
    "parse_kind",
    "random",
]
