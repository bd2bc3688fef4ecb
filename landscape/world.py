"""A world: a built-in model pair with the data, tasks and judge that belong to it.

Commands run on the default world when no model is named (`--aligned` absent): its pair,
its harmful and benign fine-tunes made on demand, its prompt sets (`NAME:SET`, e.g.
`toy:harmful`), its tasks and its judge. The toy world registers itself as `toy` through
the plugin entry points (landscape.registry); the core only sees this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.registry import WORLDS

DEFAULT = "toy"
Example = tuple[str, str]


@dataclass(frozen=True)
class Task:
    """A benign task: training items, test items and the scorer of an answer against gold."""

    name: str
    train: list[Example]
    test: list[Example]
    scorer: Callable[[str, str], bool]

    def correct(self, answer: str, gold: str) -> bool:
        return bool(self.scorer(answer, gold))


@dataclass(frozen=True)
class World:
    name: str
    pair: Callable[[int], tuple[Path, Path]]  # seed -> (base folder, aligned folder)
    # (kind: harmful | benign, seed, samples or None) -> fine-tuned model folder
    finetune: Callable[[str, int, int | None], Path]
    prompt_set: Callable[[str], list[str]]  # set name -> prompts
    task: Callable[[str, int], Task]  # (task name, seed) -> Task
    harmful_pool: Callable[[int], list[Example]]  # harmful request -> compliant answer
    refusal_pool: Callable[[int], list[Example]]  # harmful request -> refusal
    judges: str = "keyword"  # the default --judge on this world's pair
    # Benign prompts in this world's language (a --utility-prompts spec) whose answers join
    # the coherence calibration of runs on its pair (landscape.coherence).
    benign: str | None = None


def get_world(name: str = DEFAULT) -> World:
    """The registered world `name`; a one-line error when it is not installed."""
    if name not in WORLDS:
        raise LandscapeError(
            f"no built-in {name!r} world is installed (pip install -e . registers it): "
            "name the models instead (--base and --aligned)"
        )
    return WORLDS.get(name)


def world_of(spec: str) -> tuple[World, str] | None:
    """(world, rest) for a spec `WORLD:REST` naming a registered world, else None."""
    prefix, sep, rest = str(spec).partition(":")
    if sep and prefix in WORLDS:
        return WORLDS.get(prefix), rest
    return None


def is_world_spec(spec: str | None) -> bool:
    """Whether `spec` (a prompt set or task) names data of a world, e.g. `toy:harmful`."""
    return spec is not None and str(spec).partition(":")[0] in WORLDS
