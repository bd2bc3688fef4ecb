"""Lisa (Huang et al. 2024, "Lazy safety alignment"): bi-state optimisation, a hook of the one
training loop (`landscape.train.TrainHook`).

Training alternates between two states: a share of the optimizer steps trains on alignment
(safety) data, the rest on the user's fine-tuning data. Each state adds the proximal term
ρ/2·‖w − w̃‖² over the trained parameters, w̃ being the weights the *other* state left when it
last handed over, so that neither drifts far from the consensus of the two.

Details that follow the released code (github.com/git-disl/Lisa, `LisaTrainer`):
- training starts in the alignment state; a cycle is K1 alignment steps then K2 fine-tuning
  steps, K1 = share × cycle (the released script: 100 + 900 steps, which is one epoch of its
  5000 samples at batch 5; our default cycle is one epoch too);
- the step budget is SFT's: an alignment step replaces the fine-tuning batch that the step
  would have used (the task data are drawn in SFT's order and that batch is skipped);
- the proximal term is over the trainable parameters themselves (LoRA's A and B), and is
  left out during the first 10% of the steps (the released code: it hurts convergence early);
- on leaving a state, its weights are kept as the anchor of the other state; both anchors
  start at the initial weights; one optimizer (and its moments) serves both states;
- alignment batches are drawn from the safety data in a seeded shuffled order, reshuffled
  when it runs out, at the training batch size.
"""

from __future__ import annotations

import logging
import random

import torch

from landscape.errors import LandscapeError
from landscape.train import Example, TrainConfig, encode

log = logging.getLogger(__name__)

ALIGNMENT, FINETUNE = "alignment", "finetune"


class Lisa:
    """Lisa's bi-state optimisation: `items` puts the alignment batches in, `proximal` is the
    penalty the loop adds (pass it as `train(..., penalty=lisa.proximal, hook=lisa)`)."""

    def __init__(
        self,
        alignment: list[Example],
        rho: float = 1.0,
        share: float = 0.1,
        cycle: int | None = None,
        prox_delay: float = 0.1,
        seed: int = 0,
    ):
        self.alignment, self.rho, self.share = alignment, rho, share
        self.cycle_option, self.prox_delay = cycle, prox_delay
        self.rng = random.Random(seed)  # its own: the task order and torch's RNG stay SFT's
        self.order: list[int] = []
        self.phase: str | None = None
        self.step = -1
        self.steps = {ALIGNMENT: 0, FINETUNE: 0}
        self.switches: list[dict] = []

    # --- the schedule -----------------------------------------------------------------------
    def start(self, model, tokenizer, cfg: TrainConfig, total_steps: int, steps_per_epoch: int):
        self.cycle = self.cycle_option or steps_per_epoch
        # Rounded half up (round() would take 0.5 to 0); the share realised is reported.
        self.k_align = min(self.cycle, int(self.share * self.cycle + 0.5))
        self.total = total_steps
        self.batch_size = cfg.batch_size
        self.data = encode(tokenizer, self.alignment, cfg.max_len) if self.k_align else []
        if self.k_align and not self.data:
            raise LandscapeError("lisa: the alignment (safety) data are empty")
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        w0 = {n: p.detach().clone() for n, p in self.params.items()}
        self.anchors = {ALIGNMENT: w0, FINETUNE: {n: t.clone() for n, t in w0.items()}}
        self.phase = self.phase_of(0)
        log.info(
            "lisa: %d alignment + %d fine-tuning steps a cycle, ρ = %g, proximal from step %d",
            self.k_align,
            self.cycle - self.k_align,
            self.rho,
            int(self.prox_delay * total_steps) + 1,
        )

    def phase_of(self, step: int) -> str:
        """The state of optimizer step `step`: each cycle begins with its alignment steps."""
        return ALIGNMENT if step % self.cycle < self.k_align else FINETUNE

    def items(self, step: int, items: list) -> list:
        if step != self.step:
            self._enter(step)
        if self.phase == FINETUNE:
            return items
        return [self.data[i] for i in self._draw(self.batch_size)]

    def _enter(self, step: int) -> None:
        phase = self.phase_of(step)
        if phase != self.phase:  # hand over: the state left becomes the other's anchor
            with torch.no_grad():
                self.anchors[self.phase] = {n: p.detach().clone() for n, p in self.params.items()}
                drift = sum(
                    float((self.anchors[ALIGNMENT][n] - self.anchors[FINETUNE][n]).pow(2).sum())
                    for n in self.params
                )
            self.switches.append({"step": step, "to": phase, "drift": drift})
            self.phase = phase
        self.step = step
        self.steps[phase] += 1

    def _draw(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if not self.order:
                self.order = list(range(len(self.data)))
                self.rng.shuffle(self.order)
            take = min(k - len(out), len(self.order))
            out += self.order[:take]
            self.order = self.order[take:]
        return out

    # --- the proximal term ------------------------------------------------------------------
    def proximal(self, model) -> torch.Tensor:
        """ρ/2·Σ‖w − w̃‖² over the trained parameters, w̃ the other state's anchor; zero while
        ρ is 0 or in the first `prox_delay` share of the steps (the released code's rule:
        active once the step index passes prox_delay × total steps)."""
        device = next(iter(self.params.values())).device
        if self.rho == 0 or self.step <= self.prox_delay * self.total:
            return torch.zeros((), device=device)
        anchor = self.anchors[FINETUNE if self.phase == ALIGNMENT else ALIGNMENT]
        return self.rho / 2 * sum((p - anchor[n]).pow(2).sum() for n, p in self.params.items())

    # --- checkpoint and report --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "phase": self.phase,
            "step": self.step,
            "steps": dict(self.steps),
            "switches": list(self.switches),
            "order": list(self.order),
            "rng": self.rng.getstate(),
            "anchors": {k: {n: t.cpu() for n, t in a.items()} for k, a in self.anchors.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.phase, self.step = state["phase"], state["step"]
        self.steps, self.switches = dict(state["steps"]), list(state["switches"])
        self.order = list(state["order"])
        self.rng.setstate(state["rng"])
        self.anchors = {
            k: {n: t.to(self.params[n].device) for n, t in a.items()}
            for k, a in state["anchors"].items()
        }

    def report(self) -> dict:
        """What result.json keeps: the settings, the share of steps each state had and every
        hand-over with ‖w_align − w_finetune‖² at that moment."""
        done = sum(self.steps.values())
        return {
            "rho": self.rho,
            "share": self.share,
            "cycle": self.cycle,
            "alignment_steps_per_cycle": self.k_align,
            "prox_delay": self.prox_delay,
            "alignment_examples": len(self.alignment),
            "steps": dict(self.steps),
            "alignment_share_realised": self.steps[ALIGNMENT] / done if done else 0.0,
            "switches": self.switches,
        }


def lisa_hook(cfg, safety: list[Example] | None) -> Lisa:
    """The hook of a Lisa run: its alignment data are `safety` (from --safety-data) or the
    default world's refusals, all of them (the released code takes up to 10,000)."""
    from landscape.asft.data import refusal_pool

    if cfg.lisa_share == 0:  # no alignment step: no data needed
        alignment = []
    else:
        alignment = list(safety) if safety is not None else refusal_pool(cfg.seed)
    return Lisa(
        alignment,
        rho=cfg.lisa_rho,
        share=cfg.lisa_share,
        cycle=cfg.lisa_cycle,
        prox_delay=cfg.lisa_prox_delay,
        seed=cfg.seed,
    )
