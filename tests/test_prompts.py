"""Prompt files of every supported kind, sampling, and chat rendering."""

from __future__ import annotations

import csv
import json
import logging
import sys
import types
from pathlib import Path

import pytest

import landscape.prompts as prompts_mod
from landscape.errors import LandscapeError
from landscape.prompts import load_prompts, render_chat

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
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
    with pytest.raises(LandscapeError, match="unknown prompt file type '.xlsx'"):
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
    assert len(load_prompts(str(path), n=80, seed=0)) == 80


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
