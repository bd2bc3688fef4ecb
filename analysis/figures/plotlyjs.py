"""How a page gets plotly.js, and the page around a figure.

Safety work often runs on machines without internet, so every page this project writes
draws offline by default: plotly.js is plotly's own bundled copy (`get_plotlyjs`), either
inlined into the page (`inline`: one self-contained file, ~4.8 MB) or written once as
`plotly.min.js` beside the pages of a folder and loaded relatively (`beside`: the folder
travels whole). `cdn` loads it from plotly's CDN (small pages that need the network).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from landscape.errors import LandscapeError
from landscape.io import atomic_write

MODES = ("inline", "beside", "cdn")
BESIDE = "plotly.min.js"
# Set before plotly.js loads, as plotly's own pages do: keeps it from fetching MathJax.
_CONFIG = "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise LandscapeError(f"--plotlyjs must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def script_tag(mode: str) -> str:
    """The `<script>` elements that load plotly.js in `mode`."""
    check_mode(mode)
    if mode == "inline":
        from plotly.offline import get_plotlyjs

        return f'{_CONFIG}\n<script charset="utf-8">{get_plotlyjs()}</script>'
    if mode == "beside":
        return f'{_CONFIG}\n<script charset="utf-8" src="{BESIDE}"></script>'
    from plotly.io._utils import plotly_cdn_url

    return f'{_CONFIG}\n<script charset="utf-8" src="{plotly_cdn_url()}"></script>'


def place_plotlyjs(mode: str, folder: Path) -> Path | None:
    """With `beside`, `folder/plotly.min.js` (plotly's bundled copy), written unless the same
    bytes are there already; None in the other modes."""
    if check_mode(mode) != "beside":
        return None
    from plotly.offline import get_plotlyjs

    path = Path(folder) / BESIDE
    text = get_plotlyjs()
    if not (path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text):
        atomic_write(path, text)
    return path


def _finite(obj):
    """NaN and infinities as None: JSON has no such numbers (JSON.parse refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def embed_json(obj) -> str:
    """`obj` (plain JSON types) as JSON that is safe inside a `<script type="application/json">`
    block: no `<`, `>` or `&` is left as such (so neither `</script>` nor `<!--` in model
    output can end or change the block), the JavaScript line separators are escaped, and
    NaN or an infinity is null."""
    text = json.dumps(_finite(obj), ensure_ascii=False, sort_keys=True, allow_nan=False)
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, esc)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
{plotlyjs}
</head>
<body>
{body}
</body>
</html>
"""


def page(title: str, body: str, mode: str | None, css: str = "") -> str:
    """A whole HTML page: `body` (markup made by the caller) with plotly.js loaded in `mode`
    (None: a page without plotly.js)."""
    scripts = script_tag(mode) if mode is not None else ""
    return PAGE.format(title=html.escape(title), css=css, plotlyjs=scripts, body=body)
