"""The report as one HTML page.

Tables are written as HTML here (every cell escaped), so they read without JavaScript. The
figure, the points and their answers travel as JSON in a `<script type="application/json">`
block (`embed_json`: no `<`, `>` or `&` left in it), and `report.js` draws the figure and
shows a clicked point's answers by setting `textContent` only: model output is shown as
text and never parsed as HTML.
"""

from __future__ import annotations

import html
from importlib.resources import files

from analysis.figures.plotlyjs import embed_json, page

FIRST_ANSWERS = 3  # answers shown when a point is clicked; the rest on demand


def _asset(name: str) -> str:
    return files("analysis.report").joinpath(name).read_text(encoding="utf-8")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def table_html(t: dict) -> str:
    """One table section: its title, an optional note and the escaped cells."""
    head = "".join(f"<th>{_e(c)}</th>" for c in t["columns"]) if any(t["columns"]) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in t["rows"]
    )
    note = f'<p class="note">{_e(t["note"])}</p>' if t.get("note") else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return (
        f'<section class="card" id="{_e(t["id"])}"><h2>{_e(t["title"])}</h2>{note}'
        f'<div class="scroll"><table>{thead}<tbody>{body}</tbody></table></div></section>'
    )


def _texts(texts: list[dict]) -> str:
    return "".join(
        f'<section class="card wide"><details><summary>{_e(t["title"])}</summary>'
        f"<pre>{_e(t['text'])}</pre></details></section>"
        for t in texts
    )


def _appendix(tables: list[dict]) -> str:
    return "".join(
        f'<section class="card wide" id="{_e(t["id"])}"><details><summary>{_e(t["title"])}'
        f"</summary>{table_html({**t, 'title': ''})}</details></section>"
        for t in tables
        if t["rows"]
    )


FIGURE = """<section class="card wide" id="landscape"><h2>{title}</h2>
<p class="hint">{hint}</p>
<div id="plot" style="height:{height}px"><p class="fallback">The figure needs plotly.js, which \
did not load: a page made with --plotlyjs beside needs plotly.min.js in its folder, one made with \
--plotlyjs cdn the network.</p></div>
</section>"""

ANSWERS = """<section class="card wide" id="answers"><h2>Answers at a point</h2>
<p class="controls"><label>point <select id="point-select"></select></label>
<label><input type="checkbox" id="only-unsafe"> only answers the {judge} judge called unsafe</label></p>
<div id="point-info" class="note">Click a point of the landscape (or choose one above) to read
its answers with each judge's verdict.</div>
<div id="answer-list"></div>
<p><button type="button" id="show-all" hidden>show all answers</button></p>
</section>"""


def render(report: dict, plotlyjs: str) -> str:
    """The page of `report` (the data of `grid_report` or `asft_report`)."""
    parts = [
        f'<header><h1>{_e(report["title"])}</h1><p class="note">{_e(report["subtitle"])}</p>'
        '<p class="note">Written from the run\'s folder alone by analysis.report.</p></header>',
        '<div class="cards">' + "".join(table_html(t) for t in report["tables"]) + "</div>",
    ]
    client = {k: report.get(k) for k in ("figure", "points", "answers", "dirs", "judge", "judges")}
    client["first_answers"] = FIRST_ANSWERS
    if report.get("figure"):
        grid = report["kind"] == "grid"
        title = "Landscape" if grid else "HS–FA frontier"
        hint = (
            "Hover a point for its ASR and Wilson interval; click it to read its answers below."
            if grid
            else "Hover a point for its λ and seeds."
        )
        parts.append(FIGURE.format(title=title, hint=_e(hint), height=report["figure_height"]))
    if report.get("answers") is not None:
        parts.append(ANSWERS.format(judge=_e(report["judge"])))
    parts.append(_texts(report.get("texts", [])))
    parts.append(_appendix(report.get("appendix", [])))
    body = (
        '<main id="report">'
        + "\n".join(parts)
        + "</main>\n"
        + f'<script type="application/json" id="report-data">{embed_json(client)}</script>\n'
        + f"<script>{_asset('report.js')}</script>"
    )
    return page(report["title"], body, plotlyjs, _asset("report.css"))
