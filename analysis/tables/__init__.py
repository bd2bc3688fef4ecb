"""Tables made from run records alone (never from live models), in the layouts of the AsFT paper.

- `epl`: `epl_table(runs)`, EPL per (grid run, direction), with τ, ASR at the origin and
  VISAGE for 1-D runs, recomputed from `points.jsonl` by the grid summary's own rule (paper
  Table 7; pivot with `df.pivot(index="direction", columns="model", values="epl_both")`),
  with each EPL's bracket; `epl_shown` is the table as its Markdown shows it;
- `hsfa`: `hsfa_table(compare_dirs)`, HS and FA (%) per poison ratio with averages, from AsFT
  comparison folders (`results.csv` + `before.json`; paper Table 2);
- `cosine`: `cosine_table(directions, against)`, globally or per tensor; `samples_layout`
  turns it into the paper's Table 1 (directions × sample counts); `cosine_layer_table` gives
  it per block;
- `render`: `to_markdown`, `to_latex`, `write(df, out_stem)` (`.csv`, `.md`, `.tex`);
- `build`: `classify` (which table an input makes), `build_tables`;
- `cli`: `main`, the command line `python -m analysis.tables`.
"""

from analysis.runs import is_comparison, is_grid_run, read_points
from analysis.tables.build import FLOAT_FORMATS, build_tables, classify
from analysis.tables.cli import main, parse_args
from analysis.tables.cosine import cosine_layer_table, cosine_table, samples_layout
from analysis.tables.epl import epl_shown, epl_table
from analysis.tables.hsfa import hsfa_table
from analysis.tables.render import to_latex, to_markdown, write
from landscape.asft.table import BEFORE_LABEL

__all__ = [
    "BEFORE_LABEL",
    "FLOAT_FORMATS",
    "build_tables",
    "classify",
    "cosine_layer_table",
    "cosine_table",
    "epl_shown",
    "epl_table",
    "hsfa_table",
    "is_comparison",
    "is_grid_run",
    "main",
    "parse_args",
    "read_points",
    "samples_layout",
    "to_latex",
    "to_markdown",
    "write",
]
