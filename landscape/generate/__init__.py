"""Generators by backend name, imported only when chosen: `hf` (default); `vllm` reserved."""

from __future__ import annotations

import importlib

from landscape.errors import LandscapeError
from landscape.generate.base import Generator

# backend -> "module:Class"; None marks a backend that is planned but not written yet.
GENERATORS: dict[str, str | None] = {
    "hf": "landscape.generate.hf:HFGenerator",
    "vllm": None,
}


def get_generator(backend: str, model, tokenizer, **kw) -> Generator:
    """A generator for `model` and `tokenizer`; `kw` goes to the backend's constructor."""
    if backend not in GENERATORS:
        raise LandscapeError(
            f"unknown backend {backend!r}: valid backends are {', '.join(GENERATORS)}"
        )
    target = GENERATORS[backend]
    if target is None:
        raise LandscapeError(f"--backend {backend} is not available yet")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(model, tokenizer, **kw)


__all__ = ["GENERATORS", "Generator", "get_generator"]
