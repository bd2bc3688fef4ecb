"""Caches verify what they hold: manifests of sizes and SHA-256, and the toy world's cache
building a damaged copy again."""

from __future__ import annotations

import logging

from landscape.io import MANIFEST, manifest_problem, write_manifest
from landscape.toy import build as toy_build


def _make(folder):
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "sub" / "config.json").write_text("{}")


def test_manifest_tells_a_damaged_folder_from_a_good_one(tmp_path):
    _make(tmp_path)
    write_manifest(tmp_path)
    assert manifest_problem(tmp_path) is None
    w = tmp_path / "weights.bin"
    data = bytearray(w.read_bytes())
    data[100] ^= 0xFF  # overwritten in place: same size, other bytes
    w.write_bytes(bytes(data))
    assert "does not hold the bytes" in manifest_problem(tmp_path)
    assert manifest_problem(tmp_path, hashes=False) is None  # size alone cannot see it
    w.write_bytes(bytes(data[:500]))  # truncated
    assert "has 500 bytes, not 1024" in manifest_problem(tmp_path, hashes=False)
    (tmp_path / "sub" / "config.json").unlink()
    w.write_bytes(bytes(range(256)) * 4)
    assert manifest_problem(tmp_path) == "sub/config.json is missing"
    (tmp_path / MANIFEST).unlink()
    assert "manifest.json is missing" in manifest_problem(tmp_path)


def test_the_toy_cache_builds_a_damaged_copy_again(tmp_path, caplog):
    final = tmp_path / "pair"
    builds = []

    def build(tmp):
        builds.append(tmp)
        _make(tmp)
        (tmp / "metrics.json").write_text("{}")

    assert toy_build._cached(final, "metrics.json", build, "toy pair") is True
    assert toy_build._cached(final, "metrics.json", build, "toy pair") is False  # verified
    assert len(builds) == 1 and manifest_problem(final) is None
    (final / "weights.bin").write_bytes(b"torn")
    with caplog.at_level(logging.WARNING):
        assert toy_build._cached(final, "metrics.json", build, "toy pair") is True
    assert len(builds) == 2 and manifest_problem(final) is None
    assert "damaged (weights.bin has 4 bytes, not 1024): building it again" in caplog.text


def test_a_cache_from_before_manifests_gets_one(tmp_path):
    final = tmp_path / "old"
    _make(final)
    (final / "metrics.json").write_text("{}")

    def build(tmp):
        raise AssertionError("a good old cache is not rebuilt")

    assert toy_build._cached(final, "metrics.json", build, "toy pair") is False
    assert manifest_problem(final) is None
