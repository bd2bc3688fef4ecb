"""`python -m landscape.directions`, per-layer cosines, and the toy sample-count fine-tunes."""

from __future__ import annotations

import math
import random

import pytest
import torch
from helpers import pair_args
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape import directions as D
from landscape import scope
from landscape.directions.__main__ import main as directions_main
from landscape.models import load_model
from landscape.toy import build, data


def test_cli_save_aligned_and_random_match_the_library(tiny_pair_dir, tmp_path, capsys):
    base, aligned = str(tiny_pair_dir["base"]), str(tiny_pair_dir["aligned"])
    out = tmp_path / "a.safetensors"
    assert (
        directions_main(
            ["save", "aligned", "--base", base, "--aligned", aligned, "--out", str(out)]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out)
    got = D.Direction.load(out)
    m_al, _ = load_model(aligned, device="cpu")
    m_base, _ = load_model(base, device="cpu")
    want = D.aligned(m_base, m_al, scope.select(m_al, "blocks"))
    assert got.names == want.names
    assert all(torch.equal(got.tensors[n], want.tensors[n]) for n in want.names)
    assert got.norm() > 0

    r = tmp_path / "r.safetensors"
    assert (
        directions_main(["save", "random:3", "--base", base, "--aligned", aligned, "--out", str(r)])
        == 0
    )
    want_r = D.random(m_al, scope.select(m_al, "blocks"), seed=3)
    assert D.Direction.load(r).cosine(want_r) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["save", "sideways"], "unknown direction"),
        (["save", "aligned", "--out-suffix"], "must end in .safetensors"),
        (["save", "harmful"], "needs --source"),
    ],
)
def test_cli_save_bad_input_exits_2_and_writes_nothing(
    args, message, tiny_pair_dir, tmp_path, capsys
):
    out = tmp_path / ("d.pt" if "--out-suffix" in args else "d.safetensors")
    args = [a for a in args if a != "--out-suffix"]
    argv = [
        *args,
        *pair_args(tiny_pair_dir),
        "--out",
        str(out),
    ]
    assert directions_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def _two_layers(a, b, c):
    return D.Direction(
        {
            "model.layers.0.w": torch.tensor(a),
            "model.layers.1.w": torch.tensor(b),
            "model.norm.weight": torch.tensor(c),
        }
    )


# fp32 tensors: values whose squares underflow are out of scope; zeros stay in (zero blocks)
entry = st.one_of(st.just(0.0), st.floats(1e-3, 10), st.floats(-10, -1e-3))
vec = st.lists(entry, min_size=3, max_size=3)


@settings(max_examples=50, deadline=None)
@given(vec, vec, vec, vec, vec, vec)
def test_cosine_per_layer_is_the_cosine_of_each_block(a1, a2, a3, b1, b2, b3):
    x, y = _two_layers(a1, a2, a3), _two_layers(b1, b2, b3)
    got = D.cosine_per_layer(x, y)
    assert list(got) == ["layer 0", "layer 1", "other"]
    for key, (u, v) in zip(got, ((a1, b1), (a2, b2), (a3, b3))):
        nu, nv = math.sqrt(sum(t * t for t in u)), math.sqrt(sum(t * t for t in v))
        want = sum(s * t for s, t in zip(u, v)) / (nu * nv) if nu * nv > 0 else 0.0
        assert got[key] == pytest.approx(want, abs=1e-5)


def test_layer_of_reads_block_indices():
    assert D.layer_of("model.layers.12.mlp.up_proj.weight") == 12
    assert D.layer_of("transformer.h.3.attn.c_attn.weight") == 3
    assert D.layer_of("model.embed_tokens.weight") is None


def test_toy_sample_of_n_cycles_with_fresh_answers():
    w = data.world(0)
    few = build._sample(build.harmful_examples, w, random.Random(7), 10)
    assert len(few) == 10 and len({p for p, _ in few}) == 10
    many = build._sample(build.harmful_examples, w, random.Random(7), 500)
    assert len(many) == 500
    prompts = [p for p, _ in many]
    assert len(set(prompts)) == len(w.harmful_train)  # all 483, then some again
    # the same seed gives the same sample; a repeated prompt gets a newly drawn answer
    assert many == build._sample(build.harmful_examples, w, random.Random(7), 500)
    assert len(set(many)) > len(set(prompts))
    with pytest.raises(ValueError):
        build.toy_finetune("harmful", n=0)
