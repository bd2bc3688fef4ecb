"""Figures made from a run folder alone (never from live models)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def load_run(run: str | Path) -> tuple[dict, list[dict], dict]:
    run = Path(run)
    config = json.loads((run / "config.json").read_text())
    points = [
        json.loads(line) for line in (run / "points.jsonl").read_text().splitlines() if line.strip()
    ]
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return config, points, summary


def _axis_label(config: dict, i: int) -> str:
    return (
        f"α along {config['dirs'][i]} ({config['norm']} norm)"
        if i == 0
        else f"β along {config['dirs'][i]} ({config['norm']} norm, ⊥ first)"
    )


def plot_run(run: str | Path) -> Path:
    """`landscape.png` in the run folder: the 1-D ASR curve with its Wilson band, or the 2-D
    ASR heat map with contour lines and the basin edge at τ."""
    run = Path(run)
    config, points, summary = load_run(run)
    plt.rcParams.update({"font.size": 11})
    fig, ax = plt.subplots(figsize=(6, 4.5))
    tau = summary.get("tau")
    if len(config["dirs"]) == 1:
        pts = sorted(points, key=lambda p: p["coords"][0])
        x = [p["coords"][0] for p in pts]
        ax.fill_between(
            x,
            [p["lo"] for p in pts],
            [p["hi"] for p in pts],
            color=PALETTE[0],
            alpha=0.25,
            label="Wilson 95%",
        )
        ax.plot(
            x,
            [p["asr"] for p in pts],
            "o-",
            color=PALETTE[0],
            label=f"ASR ({summary.get('judge', 'judge')})",
        )
        if tau is not None:
            ax.axhline(tau, color=PALETTE[1], ls="--", lw=1, label=f"τ = {tau:.2f}")
        ax.set_xlabel(_axis_label(config, 0))
        ax.set_ylabel("attack success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="best", frameon=False)
    else:
        xs = sorted({p["coords"][0] for p in points})
        ys = sorted({p["coords"][1] for p in points})
        z = np.full((len(ys), len(xs)), np.nan)
        for p in points:
            z[ys.index(p["coords"][1]), xs.index(p["coords"][0])] = p["asr"]
        mesh = ax.pcolormesh(xs, ys, z, cmap="viridis", vmin=0, vmax=1, shading="nearest")
        fig.colorbar(mesh, ax=ax, label=f"ASR ({summary.get('judge', 'judge')})")
        if len(xs) > 1 and len(ys) > 1 and not np.isnan(z).all():
            cs = ax.contour(xs, ys, z, levels=[0.2, 0.4, 0.6, 0.8], colors="white", linewidths=0.8)
            ax.clabel(cs, fontsize=8)
            if tau is not None and np.nanmin(z) < tau < np.nanmax(z):
                ax.contour(xs, ys, z, levels=[tau], colors=PALETTE[1], linewidths=2)
        ax.plot(0, 0, "*", color="white", ms=12, mec="black")
        ax.set_xlabel(_axis_label(config, 0))
        ax.set_ylabel(_axis_label(config, 1))
    ax.set_title(
        "Safety landscape"
        + (
            f" (basin edge: ASR = τ = {tau:.2f})"
            if tau is not None and len(config["dirs"]) == 2
            else ""
        ),
        fontsize=11,
    )
    fig.tight_layout()
    out = run / "landscape.png"
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
