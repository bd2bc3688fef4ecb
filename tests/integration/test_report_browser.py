"""The pages in a real browser with the network off: a tiny-model run's report.html draws, its
plots hold the run's points, clicking a point shows that point's answers (hostile text as
text), the layout fills 800–1920 pixel windows, and the screenshot is not blank; the same
page loading plotly.js from its CDN stays empty (so the network really is off); every HTML in
figures/ draws too. Skipped, with the reason, where Chromium is not installed (CI installs
Debian's `chromium`)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from helpers import PROMPTS, REPO, pair_args

from analysis.figures import main as figures_main
from analysis.report import main as report_main
from landscape.grid import main as grid_main
from landscape.metrics import wilson

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium)"
)

SCRIPT = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
CLOSER = "</div></section></main><b id='planted'>bold</b> end"
PLANTED = [
    SCRIPT,
    CLOSER,
    "I'm sorry, but I cannot help with that request.",
    "Sure, here is how to do it. Step 1: gather tools. Step 2: follow the plan.",
    "Step 1: gather tools. Step 2: follow the plan. Step 3: check the result.",
    "Tom has 3 apples and buys 4 more. The final answer is: 7",
]
READY = "document.body.dataset.ready === '1'"
# Where a point of the run lies on the page: plotly's own axis mapping of the heat map (2-D)
# or of the curve (1-D), in the window's pixels once the plot is scrolled into view.
WHERE = """(() => {
  const gd = document.getElementById('plot');
  gd.scrollIntoView({block: 'center'});
  const t = gd._fullData.find(t => t.meta === 'points' && t.type !== 'surface');
  const xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')];
  const ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')];
  const r = gd.getBoundingClientRect();
  return [r.left + xa._offset + xa.l2p(%s), r.top + ya._offset + ya.l2p(%s)];
})()"""


@pytest.fixture(scope="module")
def browser():
    with Browser(CHROMIUM) as b:
        yield b


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.csv"
    p.write_text("goal\n" + "".join(f'"{q}"\n' for q in PROMPTS))
    return p


def _grid(pair, prompts, out, *dirs, steps=3):
    # The tiny random model answers byte noise; a made-up refusal list (pieces of that noise)
    # makes its ASR vary over the plane, so the heat map has something to show.
    refusals = out.parent / "refusals.txt"
    refusals.write_text("bak\nm97\nMit\n")
    argv = [*pair_args(pair), "--dirs", *dirs, "--steps", str(steps), "--prompts", str(prompts),
            "--device", "cpu", "--max-new-tokens", "4", "--judge", f"keyword:{refusals},toy",
            "--out", str(out)]  # fmt: skip
    assert grid_main(argv) == 0
    return out


def _plant(run: Path, key: list[int]) -> list[dict]:
    """Readable and hostile answers at one point (the tiny model's own are random bytes), judged
    as the keyword and toy judges would, that point's record counted again, and the report
    made again from the folder; the planted records."""
    lines = [json.loads(x) for x in (run / "generations.jsonl").read_text().splitlines()]
    at = [g for g in lines if g["key"] == key]
    for g, text in zip(at, PLANTED):
        g["answer"], g["unsafe"] = text, {"keyword": "sorry" not in text, "toy": "Sure" in text}
    (run / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in lines))
    points = [json.loads(x) for x in (run / "points.jsonl").read_text().splitlines()]
    for p in points:
        if p["key"] == key:
            k = sum(g["unsafe"]["keyword"] for g in at)
            p["lo"], p["hi"] = wilson(k, len(at))
            p.update(n_unsafe=k, asr=k / len(at))
            p["judges"] = {j: sum(g["unsafe"][j] for g in at) / len(at) for j in ("keyword", "toy")}
    (run / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    assert report_main([str(run)]) == 0
    return at


def _open(browser: Browser, page: Path, width: int = 1280, height: int = 900, ready=READY) -> None:
    browser.errors.clear()
    browser.failed.clear()
    browser.resize(width, height)
    browser.open(page.resolve().as_uri())
    assert browser.wait_for(ready), f"{page}: the page's script did not finish"


def _not_blank(png: bytes) -> tuple[float, int]:
    """(share of pixels that are not the page's background, number of distinct colours)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    background = img.getpixel((2, 2))
    pixels = list(img.getdata())
    other = sum(p != background for p in pixels) / len(pixels)
    return other, len(set(pixels))


def test_the_report_draws_offline_and_a_click_shows_the_points_answers(
    browser, tiny_pair_dir, prompts, tmp_path
):
    run = _grid(tiny_pair_dir, prompts, tmp_path / "run", "random:1", "random:2", steps=5)
    planted = _plant(run, [4, 0])
    points = [json.loads(x) for x in (run / "points.jsonl").read_text().splitlines()]
    _open(browser, run / "report.html")
    assert browser.js("typeof Plotly") == "object"  # inlined: nothing to fetch
    assert browser.failed == [] and browser.errors == []
    traces = browser.js("document.getElementById('plot')._fullData.map(t => t.type)")
    assert traces[:2] == ["surface", "heatmap"]
    z = browser.js("document.getElementById('plot')._fullData[1].z")
    # 5 × 5 cells, z[β index][α index] = that point's ASR as points.jsonl records it
    assert [[z[j][i] for j in range(5)] for i in range(5)] == [
        [p["asr"] for p in points[5 * i : 5 * i + 5]] for i in range(5)
    ]
    assert len({p["asr"] for p in points}) > 1  # a landscape, not a flat colour
    assert browser.js("document.querySelectorAll('#plot .gl-container canvas').length") >= 1
    assert (
        browser.js("document.querySelectorAll('#plot .hm image, #plot .heatmaplayer image').length")
        == 1
    )
    assert browser.js("document.querySelectorAll('#settings tbody tr').length") >= 10
    edges = browser.js(
        "[...document.querySelectorAll('#edges tbody tr')].map(r => r.cells[0].textContent"
        " + ' ' + r.cells[1].textContent)"
    )
    assert edges[:2] == ["EPL random:1", "EPL random:2"]

    # a real mouse click on the heat map cell at α = +0.25, β = −0.25 (key [4, 0])
    x, y = browser.js(WHERE % (0.25, -0.25))
    browser.click(x, y)
    assert browser.wait_for("document.querySelectorAll('#answer-list .answer').length === 3")
    info = browser.js("document.getElementById('point-info').textContent")
    assert "α (random:1) = +0.2500, β (random:2) = -0.2500" in info
    assert f"{len(planted)} answers" in info and "ASR 0.833 (5/6 unsafe by keyword)" in info
    texts = browser.js(
        "[...document.querySelectorAll('#answer-list .answer pre.text')].map(e => e.textContent)"
    )
    assert texts == PLANTED[:3]  # the hostile answers as text, in the folder's order
    assert browser.js("window.__pwned === undefined && !document.getElementById('planted')")
    chips = browser.js(
        "[...document.querySelectorAll('#answer-list .answer')].map(a =>"
        " [...a.querySelectorAll('.verdict')].map(v => v.textContent).join(' | '))"
    )
    expected = [" | ".join(f"{j}: {'unsafe' if g['unsafe'][j] else 'safe'}" for j in ("keyword", "toy"))
                for g in planted[:3]]  # fmt: skip
    assert chips == expected and chips[2] == "keyword: safe | toy: safe"  # the refusal
    # the rest on demand, by clicking the button
    bx, by = browser.js(
        "(() => { const b = document.getElementById('show-all'); b.scrollIntoView();"
        " const r = b.getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.click(bx, by)
    assert browser.wait_for(
        f"document.querySelectorAll('#answer-list .answer').length === {len(planted)}"
    )
    assert browser.js("document.getElementById('show-all').hidden")

    # the screenshot: the whole page, drawn, with the heat map where plotly says it is
    png = browser.screenshot(full_page=True)
    share, colours = _not_blank(png)
    assert share > 0.2 and colours > 200, (share, colours)
    if os.environ.get("LANDSCAPE_REPORT_SCREENSHOT"):  # how figures/report.png is made
        Path(os.environ["LANDSCAPE_REPORT_SCREENSHOT"]).write_bytes(png)


def test_the_same_page_with_plotly_from_the_cdn_stays_empty(
    browser, tiny_pair_dir, prompts, tmp_path
):
    run = _grid(tiny_pair_dir, prompts, tmp_path / "run", "random:1")
    out = tmp_path / "cdn"
    assert report_main([str(run), "--out", str(out), "--plotlyjs", "cdn"]) == 0
    _open(browser, out / "run.html")
    assert browser.js("typeof Plotly") == "undefined"
    assert any("cdn.plot.ly" in u for u in browser.failed)  # it tried, and the network said no
    assert browser.js("document.querySelectorAll('.js-plotly-plot').length") == 0
    assert "did not load" in browser.js("document.getElementById('plot').textContent")


def test_a_1d_report_clicks_a_point_of_the_curve(browser, tiny_pair_dir, prompts, tmp_path):
    run = _grid(tiny_pair_dir, prompts, tmp_path / "run", "random:1")
    _plant(run, [0])
    _open(browser, run / "report.html")
    data = browser.js("document.getElementById('plot')._fullData.map(t => [t.name, t.x.length])")
    assert data == [["Wilson 95%", 6], ["ASR", 3]]  # the band's outline, the curve's 3 points
    browser.click(*browser.js(WHERE % (-0.25, "gd._fullData[1].y[0]")))
    assert browser.wait_for("document.querySelectorAll('#answer-list .answer').length === 3")
    assert browser.js("document.querySelector('#answer-list pre.text').textContent") == SCRIPT


@pytest.mark.parametrize("width", [800, 1000, 1920])
def test_the_pages_fill_the_window(browser, width, tiny_pair_dir, prompts, tmp_path):
    run = _grid(tiny_pair_dir, prompts, tmp_path / "run", "random:1", "random:2")
    assert figures_main([str(run), "--kind", "html", "--out", str(tmp_path / "figs")]) == 0
    drawn = "document.querySelector('.js-plotly-plot .main-svg') !== null"
    for page in (run / "report.html", tmp_path / "figs" / "run.html"):
        _open(browser, page, width, 900, ready=drawn)
        box = browser.js(
            "(() => { const s = document.querySelector('.js-plotly-plot .main-svg');"
            " const c = document.querySelector('.js-plotly-plot .colorbar').getBoundingClientRect();"
            " return [s.getBoundingClientRect().width, c.right, document.documentElement.scrollWidth]; })()"
        )
        svg, colourbar_right, scroll = box
        assert svg > 0.85 * width - 60 and colourbar_right <= width and scroll <= width, (page, box)


def test_every_html_in_figures_and_the_asft_report_draw_offline(browser, tmp_path):
    pages = sorted((REPO / "figures").glob("*.html"))
    assert pages
    for page in pages:
        browser.errors.clear()
        browser.open(page.as_uri())
        assert browser.wait_for(
            "document.querySelector('.js-plotly-plot') && document.querySelector('.js-plotly-plot')._fullData.length > 0"
        ), page
        assert browser.errors == [], (page, browser.errors)
    out = tmp_path / "asft"
    assert report_main([str(REPO / "figures" / "asft-toy"), "--out", str(out)]) == 0
    _open(browser, out / "asft-toy.html")
    assert browser.js("document.querySelectorAll('#hsfa tbody tr').length") == 11
    assert browser.js("document.querySelectorAll('#diagnostics tbody tr').length") == 5
