"""Named extensions, and the plugins that fill them.

A `Registry` maps names to things (judge classes, prompt-set loaders, worlds, hooks run
after a grid). The core registers its own entries; packages that sit above the core (the
built-in toy world, the figures) register theirs through the `landscape.plugins`
entry-point group in their package metadata, so the core never imports them. Plugins are
loaded once, the first time any registry is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

from landscape.errors import LandscapeError

log = logging.getLogger(__name__)

GROUP = "landscape.plugins"
_state = {"loaded": False, "loading": False}


def load_plugins() -> None:
    """Call every `landscape.plugins` entry point's `register()` once."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
            try:
                ep.load()()
            except Exception as e:  # a broken plugin must not take the core down with it
                log.warning("plugin %s could not be loaded: %s", ep.name, e)
        _state["loaded"] = True
    finally:
        _state["loading"] = False


class Registry:
    """name -> entry. An entry may be given as a `"module:attribute"` string, imported only
    when that name is asked for (a judge model's heavy imports wait until it is chosen)."""

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Any] = {}

    def register(self, name: str, entry: Any, replace: bool = False) -> None:
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self._entries[name] = entry

    def names(self) -> list[str]:
        load_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> None:
        """A one-line LandscapeError naming the valid entries unless `name` is one."""
        if name not in self:
            raise LandscapeError(
                f"unknown {self.what} {name!r}: valid {self.what}s are {', '.join(self.names())}"
            )

    def get(self, name: str) -> Any:
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry, str) and ":" in entry:
            import importlib

            module, attr = entry.split(":")
            entry = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry
        return entry

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self.get(n)) for n in self.names()]


# Hooks called with a finished run folder (the figures package draws landscape.png).
AFTER_RUN: Registry = Registry("after-run hook")
# Worlds: a built-in model pair with its tasks, data and judge (see landscape.world).
WORLDS: Registry = Registry("world")


def after_run(folder, kind: str) -> None:
    """Run every after-run hook on `folder` (`kind`: grid | merge); a failing hook is logged,
    never fatal: the run's records are already complete. A hook whose optional dependency
    is missing (an ImportError, e.g. no matplotlib) is skipped the same way."""
    hooks: list[tuple[str, Callable]] = AFTER_RUN.items()
    for name, hook in hooks:
        try:
            hook(folder, kind)
        except (LandscapeError, ImportError) as e:
            log.warning("%s: %s", name, e)
