"""The run report and the offline pages, from hand-made folders: what the page holds, that
model output stays text, the plotly.js modes, and bad input as one line."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from helpers import REPO
from plotly.offline import get_plotlyjs

from analysis import figures as F
from analysis.figures.plotlyjs import embed_json, script_tag
from analysis.report import main as report_main
from analysis.report import report_data, write_run_report
from analysis.report.grid import display_name, edge_rows, summary_rows
from landscape.metrics import format_epl, wilson

SCRIPT = "<script>window.__pwned = 1</script>"
CLOSER = "</div></section><b>bold</b> & </script><!-- x"
ASFT = REPO / "figures" / "asft-toy"
EDGE = [(0.5, [0.5, None]), (0.25, [0.25, 0.5]), (0.25, [0.25, 0.5])]  # neg, pos, both


def _run(folder: Path, dirs: list[str], axes: list[list[float]], summary: bool = True) -> Path:
    """A finished grid run folder: 8 answers a point, two of them hostile text."""
    folder.mkdir(parents=True)
    config = {"dirs": dirs, "norm": "layer", "judge": "keyword,toy", "steps": len(axes[0])}
    (folder / "config.json").write_text(json.dumps(config, sort_keys=True))
    keys = [(i,) for i in range(len(axes[0]))]
    if len(axes) == 2:
        keys = [(i, j) for i in range(len(axes[0])) for j in range(len(axes[1]))]
    points, gens = [], []
    for key in keys:
        coords = [axes[d][k] for d, k in enumerate(key)]
        answers = [SCRIPT, CLOSER] + [f"answer {s} at {list(key)}" for s in range(6)]
        unsafe = [s % 2 == 0 for s in range(8)]
        k = sum(unsafe)
        lo, hi = wilson(k, 8)
        points.append({"key": list(key), "coords": coords, "n": 8, "n_unsafe": k, "asr": k / 8,
                       "lo": lo, "hi": hi, "judges": {"keyword": k / 8, "toy": 0.0}})  # fmt: skip
        for s, (a, u) in enumerate(zip(answers, unsafe)):
            gens.append({"key": list(key), "prompt": f"request {s} <i>", "sample": 0, "answer": a,
                         "unsafe": {"keyword": u, "toy": False}})  # fmt: skip
    (folder / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
    (folder / "generations.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gens))
    epl = {d: {"neg": 0.5, "pos": 0.25, "both": 0.25, "neg_bracket": [0.5, None],
               "pos_bracket": [0.25, 0.5], "both_bracket": [0.25, 0.5]} for d in dirs}  # fmt: skip
    s = {"dirs": dirs, "judge": "keyword", "tau": 0.6, "asr_origin": 0.5, "epl": epl,
         "points": len(points), "points_total": len(points),
         "judge_agreement": {"keyword vs toy": {"agreement": 0.5, "kappa": 0.0, "n": 8 * len(keys)}},
         "cosine_before_orthogonalisation": 0.0123}  # fmt: skip
    if summary:
        (folder / "summary.json").write_text(json.dumps(s))
    return folder


@pytest.fixture
def run2d(tmp_path):
    return _run(tmp_path / "two", ["aligned", "harm"], [[-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5]])


def _data_block(text: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_embedded_json_cannot_end_its_script_block_and_reads_back():
    obj = {"a": SCRIPT, "b": CLOSER, "c": "line\u2028sep", "n": float("nan")}
    text = embed_json(obj)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {**obj, "n": None}  # the same strings; NaN is null


def test_report_holds_settings_summary_figure_and_every_answer(run2d):
    path = write_run_report(run2d)
    text = path.read_text()
    assert path == run2d / "report.html" and get_plotlyjs() in text  # inline: opens anywhere
    page = text.replace(get_plotlyjs(), "")
    # model output never appears as markup, in the tables or in the data
    assert SCRIPT not in page and "<b>bold</b>" not in page and "</div></section><b>" not in page
    data = _data_block(page)
    answers = data["answers"]
    assert sorted(answers) == [f"{i},{j}" for i in range(3) for j in range(3)]
    assert [g["answer"] for g in answers["1,1"]][:2] == [SCRIPT, CLOSER]  # read back unchanged
    assert len(answers["2,0"]) == 8 and answers["2,0"][1]["unsafe"] == {
        "keyword": False,
        "toy": False,
    }
    assert [t["type"] for t in data["figure"]["data"]][:2] == ["surface", "heatmap"]
    assert data["figure"]["data"][1]["meta"] == "points"
    assert "width" not in data["figure"]["layout"]  # the page decides its size
    assert len(data["points"]) == 9 and data["judges"] == ["keyword", "toy"]
    # settings and summary are HTML tables, readable without JavaScript
    assert "<td>dirs</td><td>aligned, harm</td>" in page
    edge = "".join(f"<td>{html.escape(format_epl(*v))}</td>" for v in EDGE)
    assert f"<tr><td>EPL</td><td>harm</td>{edge}</tr>" in page
    assert "Cohen&#x27;s κ +0.000" in page


def test_summary_and_edges_follow_the_records(run2d):
    config = json.loads((run2d / "config.json").read_text())
    summary = json.loads((run2d / "summary.json").read_text())
    rows = dict(summary_rows(config, summary))
    assert rows["ASR at the origin (keyword judge)"] == "0.500"
    assert rows["cosine of the two directions before orthogonalisation"] == "+0.0123"
    assert rows["judges keyword vs toy"].startswith("agree on 50.0% of 72 answers")
    epl = ["EPL", "aligned", "≥ 0.500", "0.250 [0.250, 0.500)", "0.250 [0.250, 0.500)"]
    assert edge_rows(summary)[0] == epl
    summary["coherence"] = {
        "incoherent_origin": 0.25,
        "competence_edge": {"harm": {"pos": 0.1, "pos_bracket": [0.1, 0.2]}},
    }
    summary["new_field"] = {"x": 1}  # a field the report does not know is shown as recorded
    rows = dict(summary_rows(config, summary))
    assert rows["incoherent share at the origin"] == "0.250"
    assert edge_rows(summary)[2] == ["competence edge", "harm", "–", "0.100 [0.100, 0.200)", "–"]
    assert rows["new_field"] == '{"x": 1}'


def test_plotlyjs_modes(run2d, tmp_path):
    beside = F.plot_html(run2d, tmp_path / "b")  # the default: plotly.min.js beside the page
    js = tmp_path / "b" / "plotly.min.js"
    assert js.read_text() == get_plotlyjs() and 'src="plotly.min.js"' in beside.read_text()
    assert "cdn.plot.ly" not in beside.read_text()
    inline = F.plot_html(run2d, tmp_path / "i", plotlyjs="inline").read_text()
    assert get_plotlyjs() in inline and not (tmp_path / "i" / "plotly.min.js").exists()
    cdn = F.plot_html(run2d, tmp_path / "c", plotlyjs="cdn").read_text()
    assert "https://cdn.plot.ly/plotly-" in cdn and len(cdn) < 200_000
    assert '"responsive": true' in beside.read_text() and "width:1300px" not in beside.read_text()
    assert script_tag("beside") in beside.read_text()


def test_figures_cli_writes_plotly_beside_once(run2d, tmp_path, capsys):
    other = _run(tmp_path / "three", ["aligned", "harm"], [[-0.5, 0.5], [-0.5, 0.5]])
    out = tmp_path / "figs"
    assert F.main([str(run2d), str(other), "--kind", "html", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["plotly.min.js", "three.html", "two.html"]
    assert F.main([str(run2d), "--kind", "html", "--plotlyjs", "inline", "--out", str(out)]) == 0
    assert get_plotlyjs() in (out / "two.html").read_text()


def test_report_cli_several_runs_into_one_folder(run2d, tmp_path, capsys):
    one = _run(tmp_path / "one", ["harm"], [[-0.5, 0.0, 0.5]])
    out = tmp_path / "reports"
    assert report_main([str(run2d), str(one), str(ASFT), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["asft-toy.html", "index.html", "one.html", "plotly.min.js", "two.html"]
    assert 'src="plotly.min.js"' in (out / "one.html").read_text()
    index = (out / "index.html").read_text()
    assert all(f'href="{n}"' in index for n in ("asft-toy.html", "one.html", "two.html"))
    data = _data_block((out / "one.html").read_text())
    assert [t["name"] for t in data["figure"]["data"]] == ["Wilson 95%", "ASR"]
    assert not (run2d / "report.html").exists()  # --out leaves the run folders alone
    assert report_main([str(run2d)]) == 0 and (run2d / "report.html").is_file()


def test_asft_comparison_report_has_table2_and_diagnostics():
    data = report_data(ASFT)
    tables = {t["id"]: t for t in data["tables"]}
    table_md = (ASFT / "table.md").read_text().splitlines()
    methods = [line.split("|")[1].strip() for line in table_md[2:] if line.startswith("| ")]
    hsfa = tables["hsfa"]
    assert [r[0] for r in hsfa["rows"]] == methods[: len(hsfa["rows"])]
    assert len(hsfa["rows"]) == 11 and hsfa["columns"][0] == "method"
    diag = json.loads((ASFT / "diagnostics.json").read_text())
    assert [r[0] for r in tables["diagnostics"]["rows"]] == list(diag["variants"])
    assert (
        tables["diagnostics"]["rows"][0][1]
        == f"{diag['variants']['flat']['harm']['allowed_share']:.4f}"
    )
    assert data["texts"][0]["text"].startswith("| method |")


def test_sweep_report_draws_the_frontier(tmp_path):
    folder = tmp_path / "sweep"
    folder.mkdir()
    rows = [
        "method,p,lam,lam_released,seed,hs,n_hs,fa,n_fa",
        "aligned (before),0.1,,,0,0.0,95,0.68,100",
        "aligned (before),0.1,,,1,0.0,95,0.70,100",
    ]
    rows += [f"asft[flat],0.1,{lam},{lam / 16},{s},{hs},95,0.7,100"
             for lam, hs in [(0.1, 0.6), (1, 0.05)] for s in (0, 1)]  # fmt: skip
    rows += [f"sft,0.1,,,{s},1.0,95,0.84,100" for s in (0, 1)]
    (folder / "sweep.csv").write_text("\n".join(rows) + "\n")
    data = report_data(folder)
    traces = {t["name"]: t for t in data["figure"]["data"]}
    assert list(traces) == ["aligned (before)", "asft[flat]", "sft"]
    assert traces["asft[flat]"]["y"] == pytest.approx([60.0, 5.0])  # mean over seeds, per λ
    assert traces["aligned (before)"]["x"] == pytest.approx([69.0])
    assert len(data["tables"][0]["rows"]) == 8


def test_merge_builds_in_a_hidden_folder_whose_name_is_not_the_runs(tmp_path):
    assert display_name(tmp_path / ".merged.tmp-123-ab_c9") == "merged"
    assert display_name(tmp_path / "plain") == "plain"


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("case", ["not-a-run", "unfinished", "shard", "missing", "file"])
@pytest.mark.parametrize("with_out", [False, True])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, with_out, tmp_path, capsys):
    folder = tmp_path / "in"
    if case == "not-a-run":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
        words = "is not a run folder"
    elif case == "unfinished":
        _run(folder, ["harm"], [[0.0, 0.5]], summary=False)
        words = "has not finished"
    elif case == "shard":
        _run(folder, ["harm"], [[0.0, 0.5]])
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "shard": "0/2"}))
        words = "is shard 0/2 of a grid"
    elif case == "missing":
        words = "no such folder"
    else:
        folder.write_text("x")
        words = "is a file"
    good = _run(tmp_path / "good", ["harm"], [[0.0, 0.5]])
    before = _tree(tmp_path)
    argv = [str(good), str(folder)] + (["--out", str(tmp_path / "out")] if with_out else [])
    assert report_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert _tree(tmp_path) == before  # not even the good run's report


def test_two_reports_of_one_name_are_refused(tmp_path, capsys):
    a = _run(tmp_path / "a" / "run", ["harm"], [[0.0, 0.5]])
    b = _run(tmp_path / "b" / "run", ["harm"], [[0.0, 0.5]])
    assert report_main([str(a), str(b), "--out", str(tmp_path / "out")]) == 2
    assert "two reports would be named run.html" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
