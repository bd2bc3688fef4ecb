"""What a running grid holds: the one `RunContext` that the dense loop, the search and the
point code share, with the time spent in each stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from landscape.coherence import Calibration
from landscape.directions import Direction
from landscape.grid.config import GridConfig
from landscape.store import RunStore
from landscape.utility import UtilitySet


@dataclass
class Timing:
    """Seconds spent perturbing (and restoring), generating and judging, scoring coherence
    and answering the utility prompts, over `points` points computed by this process
    (timing.json)."""

    perturb: float = 0.0
    generate: float = 0.0
    judge: float = 0.0
    coherence: float = 0.0
    utility: float = 0.0
    points: int = 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RunContext:
    cfg: GridConfig
    store: RunStore
    model: object  # the aligned model, perturbed in place
    dirs: list[Direction]  # normalised, in the order of cfg.dirs
    gen: object  # a landscape.generate.Generator over `model`
    judges: list  # landscape.judges.Judge; the first one's verdicts set the ASR
    asked: list[str]  # every prompt, repeated cfg.samples times
    theta0: dict  # the unperturbed weights (landscape.perturb.snapshot)
    timing: Timing = field(default_factory=Timing)
    show_progress: bool = True
    calibration: Calibration | None = None  # coherence thresholds; None: coherence off
    prompt_ids: dict = field(default_factory=dict)  # the prompts' token ids, for the NLL pass
    utility: UtilitySet | None = None  # benign prompts answered at every point; None: off
    refusal: object = None  # the keyword judge that finds refusals of utility prompts

    @property
    def judge(self) -> str:
        """The name of the judge whose verdicts are the ASR."""
        return self.judges[0].name
