"""analysis.tables on small hand-made run records, against numbers worked out by hand."""

from __future__ import annotations

import json
import logging
import math

import pandas as pd
import pytest
import torch

from analysis import tables as T
from landscape.directions import Direction
from landscape.errors import LandscapeError

# --- hand-made records -------------------------------------------------------------------


def make_run(folder, dirs, points, tau=None, aligned=None, summary=None, norm="layer"):
    """A grid run folder: config.json, points.jsonl (one line per point), summary.json."""
    folder.mkdir(parents=True)
    config = {"dirs": dirs, "tau": tau, "aligned": aligned, "norm": norm, "judge": "keyword,toy"}
    (folder / "config.json").write_text(json.dumps(config))
    lines = []
    for coords, asr, toy in points:
        rec = {
            "coords": coords,
            "asr": asr,
            "n": 20,
            "n_unsafe": round(20 * asr),
            "judges": {"keyword": asr, "toy": toy},
            "key": [0] * len(coords),
        }
        lines.append(json.dumps(rec) + "\n")
    (folder / "points.jsonl").write_text("".join(lines))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


ALPHAS_1D = [-1.0, -0.5, 0.0, 0.5, 1.0]
ASRS_1D = [0.9, 0.2, 0.0, 0.1, 0.8]


@pytest.fixture
def run_1d(tmp_path):
    # A summary.json that disagrees with the points: the table must not copy it.
    wrong = {"epl": {"harm": {"neg": 9, "pos": 9, "both": 9}}, "visage": -1}
    pts = [([a], s, 0.0) for a, s in zip(ALPHAS_1D, ASRS_1D)]
    return make_run(tmp_path / "curve", ["harm"], pts[::-1], tau=0.1, summary=wrong)


@pytest.fixture
def run_2d(tmp_path):
    """3×3 grid over {-1, 0, 1}²; off-axis points are 1.0 and must not matter."""
    axis0 = {-1.0: 0.1, 0.0: 0.05, 1.0: 0.5}  # β = 0
    axis1 = {-1.0: 0.9, 1.0: 0.15}  # α = 0
    pts = []
    for a in (-1.0, 0.0, 1.0):
        for b in (-1.0, 0.0, 1.0):
            asr = axis0[a] if b == 0.0 else axis1[b] if a == 0.0 else 1.0
            toy = 0.6 if (a, b) == (0.0, 0.0) else 0.0
            pts.append(([a, b], asr, toy))
    return make_run(
        tmp_path / "plane", ["aligned", "harm"], pts, aligned="/models/Llama-2-7b-chat-hf/"
    )


@pytest.fixture
def comparison(tmp_path):
    folder = tmp_path / "cmp"
    folder.mkdir()
    (folder / "before.json").write_text(json.dumps({"hs": 0.02, "fa": 0.9, "hs_toy": 0.0}))
    res = pd.DataFrame(
        [
            ("sft", 0.05, 0.5, 0.8, 0.4),
            ("sft", 0.1, 0.7, 0.9, 0.6),
            ("asft[flat]", 0.05, 0.0, 0.85, 0.0),
            ("asft[flat]", 0.1, 0.1, 0.75, 0.05),
        ],
        columns=["method", "p", "hs", "fa", "hs_toy"],
    )
    res.to_csv(folder / "results.csv", index=False)
    return folder


@pytest.fixture
def direction_files(tmp_path):
    al = Direction(
        {"w1": torch.tensor([1.0, 0.0, 0.0]), "w2": torch.tensor([0.0, 1.0])}, {"kind": "aligned"}
    )
    harm = Direction({"w1": torch.tensor([1.0, 1.0, 0.0]), "w2": torch.tensor([0.0, 0.0])})
    rand = Direction({"w1": torch.tensor([0.0, 0.0, 1.0]), "w2": torch.tensor([0.0, -2.0])})
    return {
        "aligned": al.save(tmp_path / "d" / "aligned.safetensors"),
        "harm-n100": harm.save(tmp_path / "d" / "harm-n100.safetensors"),
        "random": rand.save(tmp_path / "d" / "random.safetensors"),
    }


# --- EPL ---------------------------------------------------------------------------------


def test_epl_table_1d_by_hand(run_1d):
    df = T.epl_table([run_1d])
    assert len(df) == 1
    r = df.iloc[0]
    assert (r["run"], r["model"], r["direction"], r["norm"]) == ("curve", "toy", "harm", "layer")
    assert r["tau"] == 0.1 and r["asr_origin"] == 0.0
    # neg: α=-0.5 has 0.2 > τ, so the basin stops at the origin.
    assert r["epl_neg"] == 0.0 and not r["epl_neg_censored"]
    # pos: α=0.5 has 0.1 ≤ τ (inside), α=1 has 0.8 > τ: 0.5, not censored.
    assert r["epl_pos"] == 0.5 and not r["epl_pos_censored"]
    assert r["epl_both"] == 0.0 and not r["epl_both_censored"]
    # VISAGE: no point reaches 100 %, so the span is the whole curve:
    # mean(100 - [90, 20, 0, 10, 80]) = (10 + 80 + 100 + 90 + 20) / 5 = 60.
    assert r["visage"] == pytest.approx(60.0)


def test_epl_table_brackets_by_hand(run_1d, run_2d):
    r = T.epl_table(run_1d).iloc[0]
    # neg: -0.5 is the first step and unsafe; pos: 0.5 safe, 1.0 unsafe; both: the smaller.
    assert (r["epl_neg_lo"], r["epl_neg_hi"]) == (0.0, 0.5)
    assert (r["epl_pos_lo"], r["epl_pos_hi"]) == (0.5, 1.0)
    assert (r["epl_both_lo"], r["epl_both_hi"]) == (0.0, 0.5)
    df = T.epl_table(run_2d).set_index("direction")
    al, harm = df.loc["aligned"], df.loc["harm"]
    # a censored side's upper end is +inf in a table (None in summary.json)
    assert (al["epl_neg_lo"], al["epl_neg_hi"]) == (1.0, math.inf)
    assert (al["epl_pos_lo"], al["epl_pos_hi"]) == (0.0, 1.0)
    assert (harm["epl_pos_lo"], harm["epl_pos_hi"], harm["epl_both_hi"]) == (1.0, math.inf, 1.0)


def test_epl_markdown_shows_formatted_epls_and_the_csv_the_numbers(run_2d, tmp_path, capsys):
    out = tmp_path / "tables"
    assert T.main([str(run_2d), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    md = (out / "epl.md").read_text()
    assert md.strip() in printed  # what is printed is what is written
    header = md.splitlines()[0]
    assert "epl_neg_lo" not in header and "epl_neg_censored" not in header
    aligned = next(line for line in md.splitlines() if "| aligned |" in line)
    # aligned: safe to the range end at -1, unsafe at its first step +1
    assert "| ≥ 1.000 | < 1 | < 1 |" in aligned
    csv = pd.read_csv(out / "epl.csv").set_index("direction")
    assert csv.loc["aligned", "epl_neg_hi"] == math.inf and csv.loc["aligned", "epl_pos"] == 0.0
    assert csv["epl_pos_hi"].dtype.kind == "f" and bool(csv.loc["harm", "epl_pos_censored"])
    tex = (out / "epl.tex").read_text()  # LaTeX keeps the numbers (no ≥ to typeset)
    assert "epl\\_neg\\_hi" in tex and "≥" not in tex


def test_epl_shown_bracket_rule(run_1d):
    shown = T.epl_shown(T.epl_table(run_1d)).iloc[0]
    assert (shown["epl_neg"], shown["epl_pos"], shown["epl_both"]) == (
        "< 0.5",
        "0.500 [0.500, 1.000)",
        "< 0.5",
    )


def test_summary_without_brackets_is_read_and_checked_only_where_it_can_be(tmp_path, caplog):
    pts = [([a], s, 0.0) for a, s in zip(ALPHAS_1D, ASRS_1D)]
    old = {"epl": {"harm": {"neg": 0.0, "pos": 0.5, "both": 0.0}}}  # before brackets
    with caplog.at_level(logging.WARNING, logger="analysis"):
        r = T.epl_table(make_run(tmp_path / "old", ["harm"], pts, tau=0.1, summary=old)).iloc[0]
    assert not caplog.records  # nothing to disagree with
    assert (r["epl_pos_lo"], r["epl_pos_hi"]) == (0.5, 1.0)  # brackets from points.jsonl
    brackets = {"neg_bracket": [0.0, 0.5], "pos_bracket": [0.5, 1.0], "both_bracket": [0.0, 0.5]}
    good = {"epl": {"harm": {**old["epl"]["harm"], **brackets}}}
    bad = {"epl": {"harm": {**good["epl"]["harm"], "pos_bracket": [0.5, None]}}}
    with caplog.at_level(logging.WARNING, logger="analysis"):
        T.epl_table(make_run(tmp_path / "good", ["harm"], pts, tau=0.1, summary=good))
        assert not caplog.records
        T.epl_table(make_run(tmp_path / "bad", ["harm"], pts, tau=0.1, summary=bad))
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'bad'}: summary.json's EPL along harm differs from points.jsonl"
    ]


def test_visage_span_between_the_walls(tmp_path):
    alphas = [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]
    asrs = [1.0, 1.0, 0.3, 0.0, 0.0, 0.05, 1.0]
    run = make_run(tmp_path / "walls", ["random:1"], [([a], s, 0.0) for a, s in zip(alphas, asrs)])
    r = T.epl_table(run).iloc[0]
    assert r["tau"] == pytest.approx(0.1)  # default: ASR(0) + 0.10
    assert (r["epl_neg"], r["epl_pos"], r["epl_both"]) == (0.0, 1.0, 0.0)
    assert not r["epl_pos_censored"]
    # walls at index 2 (30 % after 100 %) and 5 (5 % before 100 %): mean(70, 100, 100, 95).
    assert r["visage"] == pytest.approx(91.25)


def test_epl_table_2d_by_hand(run_2d):
    df = T.epl_table(run_2d).set_index("direction")
    assert list(df.index) == ["aligned", "harm"]
    assert set(df["model"]) == {"Llama-2-7b-chat-hf"}
    assert df["tau"].tolist() == pytest.approx([0.15, 0.15])  # 0.05 + 0.10
    al, harm = df.loc["aligned"], df.loc["harm"]
    # aligned (β = 0): α=-1 has 0.1 ≤ 0.15 and is the range end; α=1 has 0.5.
    assert (al["epl_neg"], al["epl_neg_censored"]) == (1.0, True)
    assert (al["epl_pos"], al["epl_pos_censored"]) == (0.0, False)
    assert (al["epl_both"], al["epl_both_censored"]) == (0.0, False)
    # harm (α = 0): β=-1 has 0.9; β=1 has 0.15 = τ (inside) and is the range end.
    assert (harm["epl_neg"], harm["epl_neg_censored"]) == (0.0, False)
    assert (harm["epl_pos"], harm["epl_pos_censored"]) == (1.0, True)
    assert df["visage"].isna().all()  # VISAGE is for 1-D curves


def test_epl_table_other_judge(run_2d):
    df = T.epl_table(run_2d, judge="toy").set_index("direction")
    # toy judge: 0.6 at the origin, 0 elsewhere: τ = 0.7, both sides censored at 1.
    assert df.loc["aligned", "tau"] == pytest.approx(0.7)
    assert df.loc["aligned", "asr_origin"] == 0.6
    assert df.loc["aligned", "epl_both"] == 1.0 and df.loc["aligned", "epl_both_censored"]
    assert set(df["judge"]) == {"toy"}


def test_epl_table_stacks_runs(run_1d, run_2d):
    df = T.epl_table([run_1d, run_2d])
    assert list(zip(df["run"], df["direction"])) == [
        ("curve", "harm"),
        ("plane", "aligned"),
        ("plane", "harm"),
    ]


def test_truncated_last_line_is_left_out(run_1d):
    with open(run_1d / "points.jsonl", "a") as f:
        f.write('{"coords": [2.0], "as')
    assert T.epl_table(run_1d).iloc[0]["epl_pos"] == 0.5


# --- HS / FA -----------------------------------------------------------------------------


def test_hsfa_table_by_hand(comparison):
    df = T.hsfa_table(comparison)
    assert df.columns.tolist() == [
        "method",
        "HS p=0.05",
        "HS p=0.1",
        "HS avg",
        "FA p=0.05",
        "FA p=0.1",
        "FA avg",
    ]
    assert df["method"].tolist() == ["aligned (before)", "sft", "asft[flat]"]
    t = df.set_index("method")
    assert t.loc["aligned (before)"].tolist() == pytest.approx([2, 2, 2, 90, 90, 90])
    assert t.loc["sft"].tolist() == pytest.approx([50, 70, 60, 80, 90, 85])
    assert t.loc["asft[flat]"].tolist() == pytest.approx([0, 10, 5, 85, 75, 80])
    toy = T.hsfa_table(comparison, hs_column="hs_toy").set_index("method")
    assert toy.loc["sft", "HS avg"] == pytest.approx(50.0)


def test_table2_is_one_layout_in_compare_and_in_tables(comparison):
    """compare's table.md and analysis.tables give Table 2 the same columns, rows and cells."""
    from landscape.asft.compare import format_table

    df = T.hsfa_table(comparison)
    res = pd.read_csv(comparison / "results.csv").to_dict("records")
    before = json.loads((comparison / "before.json").read_text())
    md = format_table({"before": before, "rows": res, "ratios": [0.05, 0.1]}).splitlines()
    assert [c.strip() for c in md[0].strip("|").split("|")] == df.columns.tolist()
    body = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:]]
    assert [r[0] for r in body] == df["method"].tolist()
    for r, (_, row) in zip(body, df.iterrows()):
        assert [float(x) for x in r[1:]] == pytest.approx(row.iloc[1:].tolist(), abs=0.05)


def test_hsfa_missing_ratio_gives_nan_average(comparison, tmp_path):
    res = pd.read_csv(comparison / "results.csv")
    res.iloc[:3].to_csv(comparison / "results.csv", index=False)  # asft[flat] lacks p=0.1
    t = T.hsfa_table([comparison]).set_index("method")
    assert math.isnan(t.loc["asft[flat]", "HS p=0.1"]) and math.isnan(t.loc["asft[flat]", "HS avg"])
    assert t.loc["asft[flat]", "FA p=0.05"] == pytest.approx(85.0)


# --- cosines -----------------------------------------------------------------------------


def test_cosine_table_by_hand(direction_files):
    f = direction_files
    df = T.cosine_table([f["harm-n100"], f["random"]], against=f["aligned"])
    assert df["direction"].tolist() == ["harm-n100", "random"]
    # harm: dot 1, norms √2 and √2 -> 0.5; random: dot -2, norms √2 and √5.
    assert df["cosine"].tolist() == pytest.approx([0.5, -2 / math.sqrt(10)])
    long = T.cosine_table([f["harm-n100"], f["random"]], f["aligned"], per_tensor=True)
    assert long.columns.tolist() == ["direction", "tensor", "cosine"]
    got = {(r.direction, r.tensor): r.cosine for r in long.itertuples()}
    assert got == pytest.approx(
        {
            ("harm-n100", "w1"): 1 / math.sqrt(2),
            ("harm-n100", "w2"): 0.0,
            ("random", "w1"): 0.0,
            ("random", "w2"): -1.0,
        }
    )


def _dir(w1, w2, w3):
    return Direction(
        {
            "model.layers.0.w": torch.tensor(w1),
            "model.layers.1.w": torch.tensor(w2),
            "lm_head.weight": torch.tensor(w3),
        }
    )


def test_samples_layout_by_hand(tmp_path):
    al = _dir([1.0, 0.0], [1.0, 0.0], [1.0])
    files = {
        name: d.save(tmp_path / f"{name}.safetensors")
        for name, d in {
            "harm-n10": _dir([1.0, 0.0], [0.0, 1.0], [0.0]),  # cos 1/√6
            "harm-n20": _dir([0.0, 1.0], [0.0, 1.0], [0.0]),  # cos 0
            "random-n10": _dir([-1.0, 0.0], [-1.0, 0.0], [-1.0]),  # cos -1
            "random-n20": _dir([1.0, 0.0], [1.0, 0.0], [0.0]),  # cos 2/√6
        }.items()
    }
    wide = T.samples_layout(T.cosine_table(list(files.values()), al))
    assert wide.columns.tolist() == ["direction", "n=10", "n=20"]
    assert wide["direction"].tolist() == ["harm", "random"]
    got = wide[["n=10", "n=20"]].to_numpy().ravel().tolist()
    assert got == pytest.approx([1 / math.sqrt(6), 0.0, -1.0, 2 / math.sqrt(6)])
    assert T.samples_layout(T.cosine_table([files["harm-n10"]], al)) is not None
    # labels outside the pattern, or two files for one cell: no such layout
    extra = _dir([1.0, 1.0], [0.0, 0.0], [0.0]).save(tmp_path / "other.safetensors")
    assert T.samples_layout(T.cosine_table([files["harm-n10"], extra], al)) is None
    twice = {"harm-n10": files["harm-n10"], "x/harm-n10": files["harm-n20"]}
    df = T.cosine_table(twice, al)
    df["direction"] = ["harm-n10", "harm-n10"]
    assert T.samples_layout(df) is None


def test_cosine_layer_table_by_hand(tmp_path):
    al = _dir([1.0, 0.0], [1.0, 1.0], [2.0])
    d = _dir([1.0, 1.0], [0.0, 0.0], [-3.0])
    df = T.cosine_layer_table({"d": d, "self": al}, al)
    assert df["layer"].tolist() == ["layer 0", "layer 1", "other"]
    # layer 0: 1/√2; layer 1: d is zero there -> 0.0; outside the blocks: -1
    assert df["d"].tolist() == pytest.approx([1 / math.sqrt(2), 0.0, -1.0])
    assert df["self"].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_cli_cosine_drops_the_reference_from_the_list_and_writes_per_layer(tmp_path, capsys):
    al = _dir([1.0, 0.0], [1.0, 1.0], [2.0]).save(tmp_path / "aligned.safetensors")
    h = _dir([1.0, 1.0], [0.0, 0.0], [-3.0]).save(tmp_path / "harm-n5.safetensors")
    out = tmp_path / "t"
    assert T.main([str(al), str(h), "--against", str(al), "--per-layer", "--out", str(out)]) == 0
    cos = pd.read_csv(out / "cosine.csv")
    assert cos["direction"].tolist() == ["harm-n5"]
    assert pd.read_csv(out / "cosine-per-layer.csv").columns.tolist() == ["layer", "harm-n5"]


# --- writing and the command line --------------------------------------------------------


def test_write_three_files_and_csv_round_trips(run_2d, comparison, tmp_path):
    for name, df in (("epl", T.epl_table(run_2d)), ("hsfa", T.hsfa_table(comparison))):
        paths = T.write(df, tmp_path / "out" / name)
        assert [p.name for p in paths] == [f"{name}.csv", f"{name}.md", f"{name}.tex"]
        assert all(p.is_file() for p in paths)
        pd.testing.assert_frame_equal(pd.read_csv(paths[0]), df, check_dtype=False)
        md = paths[1].read_text().splitlines()
        assert md[0].startswith("| ") and md[1].startswith("|---") and len(md) == len(df) + 2
        tex = paths[2].read_text()
        assert tex.startswith("\\begin{tabular}") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "asft[flat]" in (tmp_path / "out" / "hsfa.tex").read_text()
    assert "epl\\_neg" in (tmp_path / "out" / "epl.tex").read_text()


def test_cli_writes_every_kind(run_1d, comparison, direction_files, tmp_path, capsys):
    out = tmp_path / "tables"
    f = direction_files
    args = [str(run_1d), str(comparison), str(f["aligned"]), str(f["harm-n100"]), "--out", str(out)]
    assert T.main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    # run_1d's summary.json disagrees with its points: said once, after the inputs are read.
    assert captured.err.startswith("warning: ") and "summary.json" in captured.err
    assert "| harm-n100 | +5.00e-01 |" in printed and "| sft | 50.00 |" in printed
    # a lone `KIND-nN` label is already the sample-count layout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}.{e}"
        for n in ("epl", "hsfa", "cosine", "cosine-samples")
        for e in ("csv", "md", "tex")
    )


@pytest.mark.parametrize("case", ["not_a_run", "empty_points", "missing", "lone_direction"])
def test_cli_bad_input_exits_2_and_writes_nothing(case, run_1d, direction_files, tmp_path, capsys):
    bad = tmp_path / case
    if case == "not_a_run":
        bad.mkdir()
        (bad / "config.json").write_text("{}")
    elif case == "empty_points":
        make_run(bad, ["harm"], [])
    elif case == "lone_direction":
        bad = direction_files["aligned"]
    out = tmp_path / "tables"
    assert T.main([str(run_1d), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()


def test_shard_folders_are_refused_and_search_runs_get_no_visage(tmp_path):
    pts = [([a], s, 0.0) for a, s in zip(ALPHAS_1D, ASRS_1D)]
    shard = make_run(tmp_path / "shard", ["harm"], pts)
    cfg = json.loads((shard / "config.json").read_text())
    (shard / "config.json").write_text(json.dumps({**cfg, "shard": "0/2"}))
    with pytest.raises(LandscapeError, match="merge"):
        T.epl_table(shard)
    search = make_run(tmp_path / "search", ["harm"], pts)
    (search / "config.json").write_text(json.dumps({**cfg, "epl_search": True}))
    row = T.epl_table(search).iloc[0]
    dense = T.epl_table(make_run(tmp_path / "dense", ["harm"], pts)).iloc[0]
    assert math.isnan(row["visage"]) and not math.isnan(dense["visage"])
    # the EPL is still read from its points, as for a dense run
    assert (row["epl_neg"], row["epl_pos"]) == (dense["epl_neg"], dense["epl_pos"]) == (0.0, 0.5)
