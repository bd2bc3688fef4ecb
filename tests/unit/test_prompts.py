"""Prompt files of every supported kind, sampling, and chat rendering."""

from __future__ import annotations

import csv
import json
import logging
import sys
import types
from pathlib import Path

import pytest
from helpers import SHARED_DATA

import landscape.prompts as prompts_mod
from landscape.errors import LandscapeError
from landscape.prompts import load_prompts, render_chat

DATA = SHARED_DATA
ROWS = [
    {"id": "1", "prompt": "Describe a quiet harbour at dawn", "note": "a"},
    {"id": "2", "prompt": "List three uses for a paperclip", "note": "b"},
    {"id": "3", "prompt": "Explain why the sky looks blue", "note": "c"},
]
TEXTS = [r["prompt"] for r in ROWS]


def _csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_csv_jsonl_json_txt(tmp_path):
    assert load_prompts(str(_csv(tmp_path / "p.csv", ROWS))) == TEXTS
    # A spreadsheet export: BOM, CRLF line ends, a quoted field over two lines.
    (tmp_path / "x.csv").write_bytes(b'\xef\xbb\xbfprompt,id\r\n"two\nlines",1\r\nplain,2\r\n')
    assert load_prompts(str(tmp_path / "x.csv")) == ["two\nlines", "plain"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    assert load_prompts(str(tmp_path / "p.jsonl")) == TEXTS
    (tmp_path / "p.json").write_text(json.dumps(ROWS))
    assert load_prompts(str(tmp_path / "p.json")) == TEXTS
    (tmp_path / "s.json").write_text(json.dumps(TEXTS))
    assert load_prompts(str(tmp_path / "s.json")) == TEXTS
    (tmp_path / "p.txt").write_text("\n".join(TEXTS) + "\n\n")
    assert load_prompts(str(tmp_path / "p.txt")) == TEXTS


@pytest.mark.parametrize("col", ["goal", "Behavior", "instruction", "forbidden_prompt"])
def test_column_autodetection(tmp_path, col):
    rows = [{"other": "x", col: t} for t in TEXTS]
    assert load_prompts(str(_csv(tmp_path / "p.csv", rows))) == TEXTS


def test_column_override_and_missing_column(tmp_path):
    path = str(_csv(tmp_path / "p.csv", ROWS))
    assert load_prompts(path, column="note") == ["a", "b", "c"]
    with pytest.raises(LandscapeError, match="no column 'text'; columns: id, prompt, note"):
        load_prompts(path, column="text")
    rows = [{"id": "1", "body": "hello"}]
    with pytest.raises(LandscapeError, match="no prompt column found.*columns: id, body"):
        load_prompts(str(_csv(tmp_path / "q.csv", rows)))


def test_file_errors(tmp_path):
    with pytest.raises(LandscapeError, match="does not exist"):
        load_prompts(str(tmp_path / "missing.csv"))
    (tmp_path / "p.xlsx").write_text("x")
    with pytest.raises(LandscapeError, match="unknown prompt file type '.xlsx'.*parquet"):
        load_prompts(str(tmp_path / "p.xlsx"))
    for name, text in [("e.csv", ""), ("h.csv", "prompt\n"), ("e.txt", "\n\n"), ("e.json", "[]")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(LandscapeError, match="no prompts"):
            load_prompts(str(tmp_path / name))
    (tmp_path / "blank.csv").write_text("prompt,id\nhello,1\n,2\n")
    with pytest.raises(LandscapeError, match="prompt 2 is empty"):
        load_prompts(str(tmp_path / "blank.csv"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(LandscapeError, match="line 2 is not valid JSON"):
        load_prompts(str(tmp_path / "bad.jsonl"))


def test_seeded_sample(tmp_path):
    path = tmp_path / "p.txt"
    lines = [f"question number {i}" for i in range(50)]
    path.write_text("\n".join(lines))
    a = load_prompts(str(path), n=10, seed=3)
    assert a == load_prompts(str(path), n=10, seed=3)
    assert a != load_prompts(str(path), n=10, seed=4)
    assert len(set(a)) == 10
    assert a == sorted(a, key=lines.index)  # file order kept
    assert load_prompts(str(path), n=50) == lines
    with pytest.raises(LandscapeError, match="cannot take 51 prompts"):
        load_prompts(str(path), n=51)


def test_toy_source_delegates(monkeypatch):
    fake = types.ModuleType("landscape.toy.data")
    fake.prompt_set = lambda name: [f"{name} {i}" for i in range(5)]
    monkeypatch.setitem(sys.modules, "landscape.toy.data", fake)
    assert load_prompts("toy:harmful") == [f"harmful {i}" for i in range(5)]
    assert len(load_prompts("toy:harmful", n=2, seed=1)) == 2


@pytest.mark.parametrize(
    ("rel", "n_rows"),
    [
        ("advbench/harmful_behaviors.csv", 520),
        ("harmbench/harmbench_behaviors_text_all.csv", 400),
        ("harmbench/harmbench_behaviors_text_test.csv", 320),
    ],
)
def test_benchmark_files(rel, n_rows):
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path}")
    prompts = load_prompts(str(path))
    assert len(prompts) == n_rows
    assert all(p.strip() for p in prompts)
    sample = load_prompts(str(path), n=80, seed=0)
    assert len(sample) == 80 and sample == load_prompts(str(path), n=80, seed=0)
    assert sample != load_prompts(str(path), n=80, seed=1)
    assert sample == [p for p in prompts if p in set(sample)]  # file order kept


def test_advbench_uses_goal_not_target():
    path = DATA / "advbench" / "harmful_behaviors.csv"
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert load_prompts(str(path)) == [r["goal"] for r in rows]
    strings = DATA / "advbench" / "harmful_strings.csv"
    if strings.exists():  # target strings only: not prompts, so no column is guessed
        with pytest.raises(LandscapeError, match="columns: target; use --prompt-column"):
            load_prompts(str(strings))


@pytest.mark.parametrize(("name", "n_context"), [("all", 100), ("test", 81), ("val", 19)])
def test_harmbench_context_and_categories(name, n_context):
    path = DATA / "harmbench" / f"harmbench_behaviors_text_{name}.csv"
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    prompts = load_prompts(str(path))
    assert len(prompts) == len(rows)  # copyright rows are kept
    for r, p in zip(rows, prompts):
        if r["FunctionalCategory"] == "contextual":
            assert p == f"{r['ContextString']}\n\n---\n\n{r['Behavior']}"
        else:
            assert p == r["Behavior"]
    assert sum("\n\n---\n\n" in p for p in prompts) == n_context
    # An explicit column gives that column as it is, without the context.
    assert load_prompts(str(path), column="Behavior") == prompts
    assert load_prompts(str(path), column="BehaviorID") == [r["BehaviorID"] for r in rows]


def test_render_chat(tiny_tokenizer):
    text = render_chat(tiny_tokenizer, "Tell me a joke")
    assert text == "<s><|user|>\nTell me a joke</s>\n<|assistant|>\n"
    with_sys = render_chat(tiny_tokenizer, "Tell me a joke", system_prompt="Be brief.")
    assert with_sys.startswith("<s><|system|>\nBe brief.</s>\n<|user|>")


def test_render_chat_without_template(monkeypatch, caplog):
    tok = type("Tok", (), {"chat_template": None})()
    monkeypatch.setattr(prompts_mod, "_warned_no_template", False)
    with caplog.at_level(logging.WARNING, logger="landscape.prompts"):
        assert render_chat(tok, "hello") == "hello\n"
        assert render_chat(tok, "again") == "again\n"
    assert sum("no chat template" in r.message for r in caplog.records) == 1


def test_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(ROWS).to_parquet(tmp_path / "p.parquet")
    assert load_prompts(str(tmp_path / "p.parquet")) == TEXTS
    assert load_prompts(str(tmp_path / "p.parquet"), column="note") == ["a", "b", "c"]
    assert load_prompts(str(tmp_path / "p.parquet"), n=2, seed=0) == load_prompts(
        str(_csv(tmp_path / "p.csv", ROWS)), n=2, seed=0
    )
    pd.DataFrame({"Goal": TEXTS, "n": [1, 2, 3]}).to_parquet(tmp_path / "g.parquet")
    assert load_prompts(str(tmp_path / "g.parquet")) == TEXTS  # column names in any case
    pd.DataFrame({"id": [1, 2], "body": ["x", "y"]}).to_parquet(tmp_path / "q.parquet")
    with pytest.raises(
        LandscapeError, match="no prompt column found.*columns: id, body; use --prompt-column"
    ):
        load_prompts(str(tmp_path / "q.parquet"))
    with pytest.raises(LandscapeError, match="prompt 1 is empty or not text"):
        load_prompts(str(tmp_path / "q.parquet"), column="id")
    pd.DataFrame({"prompt": ["x", None]}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(LandscapeError, match="prompt 2 is empty or not text"):
        load_prompts(str(tmp_path / "none.parquet"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(LandscapeError, match="not a readable parquet file"):
        load_prompts(str(tmp_path / "bad.parquet"))


def test_parquet_without_pyarrow(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyarrow" else real(name, *a),
    )
    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    with pytest.raises(LandscapeError, match="reading parquet needs pyarrow: pip install pyarrow"):
        load_prompts(str(tmp_path / "p.parquet"))


def test_jsonl_column_detection(tmp_path):
    rows = [{"id": i, "forbidden_prompt": t, "category": "x"} for i, t in enumerate(TEXTS)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_prompts(str(tmp_path / "s.jsonl")) == TEXTS
    rows = [{"Question": t, "prompt_id": 1} for t in TEXTS]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_prompts(str(tmp_path / "q.jsonl")) == TEXTS


def test_hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        LandscapeError,
        match=r"^hf:walledai/AdvBench: the Hugging Face hub cannot be reached offline: "
        r"download .* pass its file instead",
    ):
        load_prompts("hf:walledai/AdvBench")
    with pytest.raises(LandscapeError, match="give a data set"):
        load_prompts("hf:")


def test_hf_without_datasets(monkeypatch):
    import importlib.util

    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a)
    )
    with pytest.raises(
        LandscapeError, match=r"needs the datasets package \(pip install datasets\)"
    ):
        load_prompts("hf:org/name")


def test_hf_dataset(monkeypatch):
    import importlib.util

    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    calls = []

    def load_dataset(name, split=None):
        calls.append((name, split))
        if name == "org/missing":
            raise FileNotFoundError("Dataset 'org/missing' doesn't exist on the Hub")
        data = {"train": [{"prompt": t, "x": 1} for t in TEXTS], "test": [{"prompt": "q"}]}
        if name == "org/one":
            data = {"train": data["train"]}
        return data if split is None else data[split]

    fake = types.ModuleType("datasets")
    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "datasets" else real(name, *a),
    )
    assert load_prompts("hf:org/two:train") == TEXTS
    assert load_prompts("hf:org/two:test") == ["q"]
    assert load_prompts("hf:org/one") == TEXTS  # the only split
    assert len(load_prompts("hf:org/one", n=2, seed=5)) == 2
    assert calls[:2] == [("org/two", "train"), ("org/two", "test")]
    with pytest.raises(
        LandscapeError, match="has splits train, test: name one, e.g. hf:org/two:train"
    ):
        load_prompts("hf:org/two")
    with pytest.raises(
        LandscapeError, match="cannot load the data set .*doesn't exist.*pass its file"
    ):
        load_prompts("hf:org/missing")
