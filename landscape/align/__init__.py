"""Safety-align a causal LM offline into a base/aligned pair: `python -m landscape.align`."""

from landscape.align.build import AlignedPair, align
from landscape.align.config import AlignConfig

__all__ = ["AlignConfig", "AlignedPair", "align"]
