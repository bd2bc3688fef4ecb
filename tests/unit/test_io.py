"""landscape.io: atomic writes and folders, JSON readers, the local-path rule."""

from __future__ import annotations

import pytest

from landscape import io
from landscape.errors import LandscapeError


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    io.write_json(path, {"x": 1})

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "fsync", broken)
    with pytest.raises(OSError):
        io.write_json(path, {"x": 2})
    assert io.read_json(path) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left


def test_replacing_renames_only_on_success(tmp_path):
    path = tmp_path / "t.bin"
    with pytest.raises(RuntimeError), io.replacing(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with io.replacing(path) as tmp:
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole"


def test_building_folder(tmp_path):
    final = tmp_path / "built"
    with pytest.raises(KeyError), io.building_folder(final) as tmp:
        (tmp / "part").write_text("x")
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []
    with io.building_folder(final) as tmp:
        (tmp / "a").write_text("1")
    assert (final / "a").read_text() == "1"
    # another process finished first: exist_ok keeps its folder and drops this build
    with io.building_folder(final, exist_ok=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in final.iterdir()) == ["a"]
    # without exist_ok a non-empty folder is not replaced
    with pytest.raises(OSError), io.building_folder(final) as tmp:
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["built"]


def test_read_json_errors_are_one_line(tmp_path):
    with pytest.raises(LandscapeError, match="run it first"):
        io.read_json(tmp_path / "nope.json", missing="run it first")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LandscapeError, match="not valid JSON"):
        io.read_json(tmp_path / "bad.json")


def test_jsonl_drops_only_a_truncated_last_line(tmp_path):
    path = tmp_path / "p.jsonl"
    io.write_jsonl(path, [{"a": 1}, {"a": 2}])
    assert io.read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with open(path, "a") as f:
        f.write('{"a": 3')
    assert io.read_lines(path) == ([('{"a": 1}', {"a": 1}), ('{"a": 2}', {"a": 2})], True)
    path.write_text('{"a": 1}\n{oops\n{"a": 2}\n')
    with pytest.raises(LandscapeError, match="line 2"):
        io.read_jsonl(path)
    assert io.read_jsonl(tmp_path / "absent.jsonl") == []


@pytest.mark.parametrize(
    "name, local",
    [
        ("meta-llama/Llama-2-7b-chat-hf", False),
        ("gpt2", False),
        ("./model", True),
        ("~/models/x", True),
        ("/abs/path", True),
        ("a/b/c", True),
        ("harm.safetensors", True),
        ("model.gguf", True),
    ],
)
def test_is_local(name, local):
    assert io.is_local(name) is local
