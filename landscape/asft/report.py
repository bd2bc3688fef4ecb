"""The comparison's table.md: Table 2 (landscape.asft.table), what each run did to the
weights, the seed spread, and how the harmful update sits against each penalty variant."""

from __future__ import annotations

from landscape.asft.table import rows_markdown, spread_markdown, table2_rows


def _num(v, fmt: str) -> str:
    return "" if v is None or v == "" else format(float(v), fmt)


def _update_lines(rows: list[dict]) -> list[str]:
    """What each run did to the weights: the table that tells a penalty's effect from
    shrinkage (see `against_sft`)."""
    if not any(r.get("update_norm") is not None for r in rows):
        return []
    lines = [
        "",
        "| run | seed | p | λ (released scale) | ‖ΔW‖ | cos(ΔW, d) | share of ‖ΔW‖² along d | "
        "share penalised | cos(ΔW, ΔW_SFT) | λ·pen(ΔW_SFT) | SFT loss gain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r.get('seed', '')} | {r['p']:g} | "
            f"{_num(r.get('lam_released'), 'g')} | "
            f"{_num(r.get('update_norm'), '.4f')} | {_num(r.get('update_cos_d'), '+.4f')} | "
            f"{_num(r.get('update_along_energy'), '.2e')} | "
            f"{_num(r.get('update_penalised'), '.4f')} | {_num(r.get('cos_sft_update'), '+.4f')} | "
            f"{_num(r.get('pen_at_sft'), '.3g')} | {_num(r.get('sft_loss_gain'), '.3g')} |"
        )
    return lines


def format_table(table: dict) -> str:
    """Markdown in the layout of the paper's Table 2 (landscape.asft.table), then the
    diagnostics of the harmful update against each penalty variant."""
    lines = [rows_markdown(table2_rows(table["before"], table["rows"], table["ratios"]))]
    if table.get("spread") and len(table.get("seeds", [])) > 1:
        lines += ["", f"Over seeds {', '.join(map(str, table['seeds']))}:", ""]
        lines.append(spread_markdown(table["spread"]))
    lines += _update_lines(table.get("runs", table["rows"]))
    d = table.get("diagnostics")
    if d:
        lines += [
            "",
            f"cos(d_aligned, d_harm) = {d['cos_aligned_harm']:+.4f}   "
            f"(a random direction: {d['cos_aligned_random']:+.4f})",
            "",
            "| variant | harmful update: share allowed | random: share allowed | harmful: signed ⟨d̂, Δ⟩/‖Δ‖ | harmful: share against d |",
            "|---|---|---|---|---|",
        ]
        for v, s in d["variants"].items():
            h, r = s["harm"], s["random"]
            lines.append(
                f"| {v} | {h['allowed_share']:.4f} | {r['allowed_share']:.4f} | "
                f"{h['along_share']:+.4f} | {h['against_share']:.4f} |"
            )
    return "\n".join(lines)
