"""A grid run's plane (or line) rebuilt from its folder, and updates projected onto it.

A grid folder keeps its settings (config.json) and its directions' fingerprints (env.json),
not the directions themselves. They are rebuilt here by the grid's own code
(`landscape.grid.build_directions`: the same builders, normalisation and orthogonalisation,
one rule in one place) from the grid's config and aligned model, and each is checked against
the fingerprint the grid recorded, so that α and β mean here what they mean on the grid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from analysis.runs import load_run
from landscape import directions as D
from landscape import scope
from landscape.directions.sources import FINETUNED
from landscape.errors import LandscapeError
from landscape.grid import GridConfig, build_directions, config_from
from landscape.io import is_local, read_json
from landscape.models import fingerprint, load_model

log = logging.getLogger(__name__)


@dataclass
class Grid:
    """A grid run folder, read: its config (as written and as a GridConfig), finished points,
    summary and env.json."""

    path: Path
    config: dict
    cfg: GridConfig
    points: list[dict]
    summary: dict
    env: dict

    @classmethod
    def open(cls, path: str | Path) -> Grid:
        path = Path(path)
        if not path.is_dir():
            raise LandscapeError(f"{path}: no such grid run folder")
        config, points, summary = load_run(path)
        if not points:
            raise LandscapeError(f"{path}: the grid has no finished points yet")
        env = read_json(path / "env.json", missing="no env.json: not a finished grid run")
        if not isinstance(env, dict) or not env.get("fingerprint_aligned"):
            raise LandscapeError(
                f"{path}/env.json records no fingerprint of the aligned model: the fine-tuning "
                "runs cannot be checked to start from the grid's model"
            )
        return cls(path, config, config_from(config), points, summary, env)

    @property
    def two_d(self) -> bool:
        return len(self.cfg.dirs) == 2

    def model_paths(self) -> tuple[str | None, str]:
        return D.model_paths(self.cfg.base, self.cfg.aligned, self.cfg.pair_seed)

    def load_model(self, device: str = "cpu"):
        """The grid's aligned model in the grid's dtype, checked to be the one it ran on."""
        _, aligned = self.model_paths()
        if is_local(aligned) and not Path(aligned).expanduser().exists():
            raise LandscapeError(f"{self.path}: its aligned model {aligned} no longer exists")
        model, tokenizer = load_model(aligned, dtype=self.cfg.dtype, device=device)
        was, now = self.env["fingerprint_aligned"], fingerprint(model)
        if was != now:
            raise LandscapeError(
                f"{self.path}: its aligned model {aligned} has other weights now ({now}) than "
                f"when the grid ran ({was})"
            )
        return model, tokenizer

    def _check_sources(self) -> None:
        """Every file the directions are rebuilt from is still there; the error names the
        missing one and the option that gave it."""
        base, _ = self.model_paths()
        for name in self.cfg.dirs:
            kind = D.parse_kind(name).kind
            if kind == "aligned" and base and is_local(base) and not Path(base).exists():
                raise LandscapeError(
                    f"{self.path}: its {name} direction needs the base model {base} (--base), "
                    "which no longer exists: the grid's directions cannot be rebuilt"
                )
            source = getattr(self.cfg, kind) if kind in FINETUNED else None
            if source is not None and not Path(source).expanduser().exists():
                raise LandscapeError(
                    f"{self.path}: its {name} direction came from --{kind} {source}, which no "
                    "longer exists: the grid's directions cannot be rebuilt"
                )

    def directions(self, model) -> tuple[list[D.Direction], bool]:
        """The grid's directions as it perturbed along them (normalised; the second
        orthogonalised against the first), rebuilt, and whether every one was checked
        against a fingerprint the grid recorded. A rebuilt direction that differs from the
        recorded one is refused."""
        self._check_sources()
        base, _ = self.model_paths()
        names = scope.select(model, self.cfg.scope)
        dirs, _ = build_directions(self.cfg, model, base, names)
        recorded = self.env.get("fingerprint_directions") or {}
        checked = True
        for name, d in zip(self.cfg.dirs, dirs):
            fp = recorded.get(name)
            if fp is None:
                log.warning(
                    "%s/env.json has no fingerprint of the %s direction: the rebuilt one is "
                    "used unchecked",
                    self.path,
                    name,
                )
                checked = False
            elif fp != d.fingerprint():
                raise LandscapeError(
                    f"{self.path}: its {name} direction, rebuilt from its config, differs from "
                    f"the one the grid ran along (fingerprint {d.fingerprint()}, recorded {fp})"
                )
        return dirs, checked


@dataclass
class Projection:
    """An update's least-squares coordinates on the span of the axes, its norm, and the
    share of it off that span (‖ΔW − proj‖/‖ΔW‖; None for a zero update)."""

    coords: list[float]
    norm: float
    off_share: float | None


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def project(delta: Mapping[str, torch.Tensor], axes: list[D.Direction]) -> Projection:
    """`delta` (name → tensor, the whole update) expressed on the span of `axes` (the grid's
    normalised directions): the coordinates c minimising ‖ΔW − Σ cᵢdᵢ‖ over the flattened
    weights, from the normal equations in float64, tensor by tensor. Weights that the axes do
    not cover count as off the span; so do the parts of covered ones they do not reach.
    Collinear axes give the least-norm solution."""
    k = len(axes)
    gram, rhs, sq = np.zeros((k, k)), np.zeros(k), 0.0
    for name, t in delta.items():
        x = _f64(t)
        sq += float((x * x).sum())
        for i, d in enumerate(axes):
            if name in d.tensors:
                rhs[i] += float((_f64(d.tensors[name]) * x).sum())
    for i, di in enumerate(axes):
        for j, dj in enumerate(axes[i:], i):
            gram[i, j] = gram[j, i] = sum(
                float((_f64(a) * _f64(dj.tensors[n])).sum())
                for n, a in di.tensors.items()
                if n in dj.tensors
            )
    coords = np.linalg.lstsq(gram, rhs, rcond=None)[0] if sq > 0 else np.zeros(k)
    # The residual itself, not ‖ΔW‖² − cᵀGc: the difference of two near-equal numbers would
    # lose the small off-plane shares that matter most.
    res = 0.0
    names = set(delta).union(*(d.tensors for d in axes))
    for name in names:
        r = _f64(delta[name]) if name in delta else None
        for c, d in zip(coords, axes):
            if name in d.tensors and c != 0:
                term = float(c) * _f64(d.tensors[name])
                r = -term if r is None else r - term
        if r is not None:
            res += float((r * r).sum())
    norm = math.sqrt(sq)
    share = math.sqrt(res) / norm if norm > 0 else None
    return Projection([float(c) for c in coords], norm, share)
