"""AsFT sweeps from a folder of runs: HS and FA against λ (Fig. 4a/b) or the learning rate (4c)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from analysis.figures.style import look, prepare_out, save, stem, styled
from analysis.runs import load_asft_runs
from landscape.errors import LandscapeError
from landscape.metrics import wilson

_SYMBOL = {"lam": "λ", "lora_r": "r"}
SETTINGS = ("task", "p", "lam", "lr", "epochs", "lora_r", "full", "seed")


def interval(rate: float, n: int | None) -> tuple[float, float]:
    """The Wilson 95% interval of a rate over `n` answers; the rate itself (no bar) when the
    run recorded no count."""
    if not n:
        return rate, rate
    return wilson(round(rate * n), int(n))


def _series_name(r: dict, keys: Sequence[str]) -> str:
    method = r.get("method", "?")
    parts = [
        method + (f" ({r['variant']})" if method.startswith("asft") and r.get("variant") else "")
    ]
    for k in (k for k in keys if r.get(k) is not None):
        value = f"{r[k]:g}" if isinstance(r[k], (int, float)) else f"{r[k]}"
        parts.append(f"{_SYMBOL.get(k, k)} = {value}")
    return ", ".join(parts)


def group(records: list[dict], x: str, ignore: set[str]) -> dict[str, list[dict]]:
    """Split records into series: same method/variant and same values of every other setting
    that varies (other than `x` and `ignore`), each sorted by `x`."""
    varying = [
        k
        for k in SETTINGS
        if k != x
        and k not in ignore
        and len({json.dumps(r.get(k)) for r in records if r.get(k) is not None}) > 1
    ]
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_series_name(r, varying), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: float(r[x]))
    return groups


def _sweep_figure(
    groups: dict[str, list[dict]], x: str, xlabel: str, title: str, xscale: Callable
) -> Figure:
    """Two panels, HS and FA (%) against `x`, one line with Wilson error bars per series."""
    with styled():
        fig = Figure(figsize=(9.6, 3.9))
        axes = fig.subplots(1, 2, sharex=True)
        for i, (name, rs) in enumerate(groups.items()):
            colour, marker = look(i)
            xv = [float(r[x]) for r in rs]
            for ax, key, nkey in ((axes[0], "hs", "n_hs"), (axes[1], "fa", "n_fa")):
                y = np.array([100 * r[key] for r in rs])
                lohi = np.array([interval(r[key], r.get(nkey)) for r in rs]) * 100
                ax.errorbar(
                    xv, y, yerr=[y - lohi[:, 0], lohi[:, 1] - y],
                    marker=marker, color=colour, capsize=3, label=name,
                )  # fmt: skip
        for ax, lab in zip(axes, ("harmful score HS (%) ↓", "fine-tuning accuracy FA (%) ↑")):
            xscale(ax)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(lab)
            ax.set_ylim(-3, 103)
        axes[0].set_title("(a) harmful score")
        axes[1].set_title("(b) fine-tuning accuracy")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="lower center", ncol=min(3, len(labels)),
            bbox_to_anchor=(0.5, -0.02),
        )  # fmt: skip
        fig.suptitle(title, fontsize=11)
        fig.tight_layout(rect=(0, 0.06 + 0.05 * ((len(labels) - 1) // 3), 1, 1))
    return fig


def lambda_records(runs_dir: str | Path) -> list[dict]:
    """The runs of a λ sweep, checked: each with a numeric λ ≥ 0."""
    runs_dir = Path(runs_dir)
    records = load_asft_runs(runs_dir)
    bad = [r["name"] for r in records if not isinstance(r.get("lam"), (int, float))]
    if bad:
        raise LandscapeError(f"{runs_dir}: runs without a numeric lam: {', '.join(bad)}")
    lowest = min(float(r["lam"]) for r in records)
    if lowest < 0:
        raise LandscapeError(f"{runs_dir}: λ must be ≥ 0, got {lowest:g}")
    return records


def draw_lambda(runs_dir: str | Path) -> Figure:
    """The figure of `plot_lambda`."""
    records = lambda_records(runs_dir)
    lams = sorted({float(r["lam"]) for r in records})
    positive = [v for v in lams if v > 0]

    def xscale(ax):
        if positive:
            # linear between 0 and the smallest positive λ, logarithmic above: 0 gets a place
            ax.set_xscale("symlog", linthresh=positive[0], linscale=0.6)
        ax.set_xticks(lams)
        ax.set_xticklabels([f"{v:g}" for v in lams])
        ax.minorticks_off()
        pad = 0.15 * positive[0] if positive else 0.5
        ax.set_xlim(lams[0] - pad, lams[-1] * 1.4 if positive else lams[-1] + pad)

    # with several methods the lr may differ between them: it does not split a series
    ignore = {"lr"} if len({r.get("method") for r in records}) > 1 else set()
    first = records[0]
    return _sweep_figure(
        group(records, "lam", ignore=ignore),
        "lam",
        "penalty weight λ (symmetric-log axis; 0 = no penalty)",
        f"AsFT λ sweep ({first.get('task', '')}, p = {first.get('p', '?')}, "
        f"lr = {first.get('lr', '?')})",
        xscale,
    )


def plot_lambda(runs_dir: str | Path, out: str | Path) -> list[Path]:
    """AsFT λ sweep (Fig. 4a/b): HS and FA against λ, symmetric-log x axis so that λ = 0 sits at
    the left end; error bars are Wilson 95% intervals over the evaluated prompts.
    `<name>-lambda.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_lambda(runs_dir), out, f"{stem(Path(runs_dir))}-lambda")


def lr_records(runs_dir: str | Path) -> list[dict]:
    """The runs of a learning-rate sweep, checked: each with a positive lr."""
    runs_dir = Path(runs_dir)
    records = load_asft_runs(runs_dir)
    bad = [r["name"] for r in records if not isinstance(r.get("lr"), (int, float)) or r["lr"] <= 0]
    if bad:
        raise LandscapeError(f"{runs_dir}: runs without a positive lr: {', '.join(bad)}")
    return records


def draw_lr(runs_dir: str | Path) -> Figure:
    """The figure of `plot_lr`."""
    records = lr_records(runs_dir)
    lrs = sorted({float(r["lr"]) for r in records})
    # λ means nothing to methods without the penalty: do not split series on it there
    for r in records:
        if not str(r.get("method", "")).startswith("asft"):
            r["lam"] = None

    def xscale(ax):
        ax.set_xscale("log")
        ax.set_xticks(lrs)
        ax.set_xticklabels([f"{v:.0e}".replace("e-0", "e-") for v in lrs])
        ax.minorticks_off()
        if len(lrs) > 1:
            ax.set_xlim(lrs[0] / 1.5, lrs[-1] * 1.5)

    first = records[0]
    return _sweep_figure(
        group(records, "lr", ignore=set()),
        "lr",
        "learning rate (log axis)",
        f"Robustness to the learning rate ({first.get('task', '')}, p = {first.get('p', '?')})",
        xscale,
    )


def plot_lr(runs_dir: str | Path, out: str | Path) -> list[Path]:
    """Learning-rate robustness (Fig. 4c): HS and FA against lr (log axis), one line per method;
    error bars are Wilson 95% intervals. `<name>-lr.{png,pdf}`."""
    out = prepare_out(out)
    return save(draw_lr(runs_dir), out, f"{stem(Path(runs_dir))}-lr")
