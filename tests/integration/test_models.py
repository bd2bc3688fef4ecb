"""Model loading, pair checks and fingerprints on tiny local models (no downloads)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_tiny_model

from landscape.errors import LandscapeError
from landscape.models import check_pair, fingerprint, load_model, resolve_device, resolve_dtype


def test_resolve_dtype_and_device():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("FP16") is torch.float16
    assert resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype("auto") is None
    with pytest.raises(LandscapeError, match="unknown dtype 'int3'"):
        resolve_dtype("int3")
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("dtype", [("float32", torch.float32), ("bf16", torch.bfloat16)])
def test_load_model_from_folder(tiny_pair_dir, dtype):
    model, tok = load_model(tiny_pair_dir["base"], dtype=dtype[0], device="cpu")
    assert not model.training
    assert next(model.parameters()).dtype is dtype[1]
    assert tok.padding_side == "left"
    assert tok.pad_token is not None
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_load_model_sets_missing_pad_token(tmp_path, tiny_tokenizer):
    d = tmp_path / "m"
    make_tiny_model(tiny_tokenizer).save_pretrained(d)
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = None
    tok.save_pretrained(d)
    model, tok2 = load_model(d, device="cpu")
    assert tok2.pad_token == tok2.eos_token
    assert model.generation_config.pad_token_id == tok2.eos_token_id


def test_load_model_missing_path(tmp_path):
    for bad in (str(tmp_path / "nope"), "./no/such/model"):
        with pytest.raises(LandscapeError, match="path does not exist"):
            load_model(bad, device="cpu")


def test_load_model_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(LandscapeError, match="offline.*local folder"):
        load_model("no-such-org-xyz/no-such-model-xyz", device="cpu")


def test_check_pair(tiny_tokenizer):
    a = make_tiny_model(tiny_tokenizer, seed=0)
    check_pair(a, make_tiny_model(tiny_tokenizer, seed=1))
    deeper = make_tiny_model(tiny_tokenizer, layers=3)
    with pytest.raises(
        LandscapeError, match=r"model\.layers\.2\.self_attn\.q_proj\.weight.*missing"
    ):
        check_pair(a, deeper)
    # Only the named parameters are compared.
    check_pair(a, deeper, names=["model.layers.0.mlp.up_proj.weight"])


def test_check_pair_shape_mismatch_names_first(tiny_tokenizer):
    from transformers import LlamaForCausalLM

    a = make_tiny_model(tiny_tokenizer)
    cfg = a.config.to_dict()
    cfg["intermediate_size"] = 48
    b = LlamaForCausalLM(type(a.config).from_dict(cfg))
    with pytest.raises(LandscapeError) as e:
        check_pair(a, b)
    msg = str(e.value)
    assert "model.layers.0.mlp.gate_proj.weight" in msg
    assert "(64, 32) vs (48, 32)" in msg


def test_fingerprint(tiny_tokenizer):
    a = make_tiny_model(tiny_tokenizer, seed=0)
    b = make_tiny_model(tiny_tokenizer, seed=0)
    fa = fingerprint(a)
    assert len(fa) == 16 and fa == fingerprint(b) == fingerprint(a)
    with torch.no_grad():
        b.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    assert fingerprint(b) != fa
    assert fingerprint(a.to(torch.bfloat16)) != fa


def _gguf(path, arch):
    import numpy as np

    GGUFWriter = pytest.importorskip("gguf").GGUFWriter

    w = GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_that_is_not_a_causal_lm_is_a_one_line_error(tmp_path):
    t5 = _gguf(tmp_path / "t5.gguf", "t5")
    (tmp_path / "junk.gguf").write_bytes(b"not gguf at all")
    cases = [
        ((t5,), {}, "holds a 't5' model, which is not a causal language model"),
        ((tmp_path,), {"gguf_file": "t5.gguf"}, "not a causal language model"),
        ((tmp_path / "junk.gguf",), {}, "junk.gguf is not a readable GGUF file"),
        ((tmp_path,), {"gguf_file": "none.gguf"}, "GGUF file does not exist"),
    ]
    for args, kw, message in cases:
        with pytest.raises(LandscapeError, match=message) as e:
            load_model(*args, device="cpu", **kw)
        assert "\n" not in str(e.value)


def test_grid_refuses_a_gguf_that_is_not_a_causal_lm(tmp_path, capsys):
    from landscape.grid import main

    t5 = str(_gguf(tmp_path / "t5.gguf", "t5"))
    out = tmp_path / "run"
    args = ["--base", t5, "--aligned", t5, "--dirs", "random", "--device", "cpu"]
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a causal language model" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
