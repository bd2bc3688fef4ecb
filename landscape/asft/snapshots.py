"""Snapshots of a fine-tuning run's trainable state while it trains (`--save-every K`).

Every K optimizer steps and after the last one, the run folder's `snapshots/` gets the
state the run has reached: the LoRA adapter as a peft adapter folder (`step-000010/`:
adapter_config.json and adapter_model.safetensors, the trained A and B only), or with
`--full` the update ΔW = W − W0 of the trained weights in the model's dtype
(`step-000010.safetensors`). `index.jsonl` has one record per snapshot: its step, the mean
task loss and penalty since the snapshot before, and where its file is; `start.json` says
which model the run started from (its path, dtype and weight fingerprint), so that an
analysis can refuse to place the snapshots on another model's landscape. A method with a
post-hoc step (Safe LoRA) adds a snapshot of the final state after it, at the same step,
marked with `"stage"`.

Snapshots are written before the training checkpoint of the same step: a resumed run writes
again those after its checkpoint, and they are the same bytes, as the run is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from landscape.io import building_folder, read_jsonl, replacing, write_json, write_jsonl
from landscape.models import fingerprint

FOLDER = "snapshots"
INDEX = "index.jsonl"
START = "start.json"
_META_KEY = "landscape.snapshot"


def snapshot_name(step: int, stage: str | None = None) -> str:
    """A snapshot's name in `snapshots/`, sortable by step."""
    return f"step-{step:06d}" + (f"-{stage}" if stage else "")


class Snapshots:
    """The snapshot writer of one run folder. `start(...)` before the model is wrapped for
    training (it fingerprints the starting weights), then `hook(trained, theta0)` is the
    training loop's `snapshot` callback."""

    def __init__(self, out: str | Path, every: int, full: bool):
        self.folder = Path(out) / FOLDER
        self.every, self.full = every, full
        self.trained = self.theta0 = None
        # Keyed by (step, stage): a resumed run writes the same records again.
        self.records = {(r["step"], r.get("stage")): r for r in read_jsonl(self.folder / INDEX)}

    def start(self, model, path: str, role: str, names: list[str]) -> None:
        """Record the model the run starts from: `path`, its `role` in the pair (aligned or
        base), the dtype it trains in, the trained weights' names and its weight fingerprint
        (the one a grid's env.json records, `landscape.models.fingerprint`, which depends on
        the dtype too)."""
        write_json(
            self.folder / START,
            {
                "model": str(path),
                "role": role,
                "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
                "fingerprint": fingerprint(model),
                "format": "full" if self.full else "lora",
                "every": self.every,
                "names": list(names),
            },
        )

    def hook(self, trained, theta0: dict | None):
        """The training loop's callback, over `trained` (the peft model, or the model itself
        with `theta0`, the starting values of its trained weights, for full fine-tuning)."""
        self.trained, self.theta0 = trained, theta0
        return self.save

    def save(self, step: int, stats: dict, stage: str | None = None) -> dict:
        """Write the snapshot of optimizer step `step` and its index record."""
        name = snapshot_name(step, stage)
        if self.full:
            rel = f"{name}.safetensors"
            self._save_delta(self.folder / rel, step)
        else:
            rel = name
            self._save_adapter(self.folder / rel)
        record = {"step": step, "path": rel, "format": "full" if self.full else "lora", **stats}
        if stage is not None:
            record["stage"] = stage
        self.records[(step, stage)] = record
        ordered = sorted(self.records.values(), key=lambda r: (r["step"], r.get("stage") or ""))
        write_jsonl(self.folder / INDEX, ordered)
        return record

    def after(self, stage: str) -> dict:
        """The snapshot of the final state after a post-hoc `stage` (Safe LoRA's projection):
        at the last step, with that step's task loss and penalty (the projection trains
        nothing)."""
        step = max(s for s, st in self.records if st is None)
        last = self.records[(step, None)]
        stats = {k: last[k] for k in ("task_loss", "penalty", "micro_steps") if k in last}
        return self.save(step, stats, stage=stage)

    def _save_adapter(self, path: Path) -> None:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = {
            k: v.detach().cpu().contiguous()
            for k, v in get_peft_model_state_dict(self.trained).items()
        }
        # exist_ok: a resumed run rebuilds a snapshot it had written; it is the same one.
        with building_folder(path, exist_ok=True) as tmp:
            self.trained.peft_config["default"].save_pretrained(tmp)
            save_file(state, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})

    def _save_delta(self, path: Path, step: int) -> None:
        from safetensors.torch import save_file

        params = dict(self.trained.named_parameters())
        with torch.no_grad():
            # The difference is taken in fp32 and stored in the model's dtype (half the size
            # of fp32 for a bf16 model; the rounding is that of the model's own weights).
            delta = {
                n: (params[n].detach().float() - w0.float()).to(params[n].dtype).cpu().contiguous()
                for n, w0 in self.theta0.items()
            }
        meta = {_META_KEY: json.dumps({"step": step, "kind": "delta"})}
        with replacing(path) as tmp:
            save_file(delta, str(tmp), metadata=meta)
