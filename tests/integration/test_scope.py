"""Scope selection: which parameters a direction covers."""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_model

from landscape.errors import LandscapeError
from landscape.scope import SCOPES, select


def test_blocks_default_is_block_matrices_in_model_order(tiny_model):
    names = select(tiny_model)
    order = [n for n, _ in tiny_model.named_parameters()]
    assert names == [n for n in order if n in names]
    assert len(names) == 2 * 7  # q, k, v, o, gate, up, down per layer
    params = dict(tiny_model.named_parameters())
    assert all(params[n].ndim == 2 and ".layers." in n for n in names)
    assert not any("norm" in n or "embed" in n or "lm_head" in n for n in names)


def test_other_named_scopes(tiny_model):
    blocks = set(select(tiny_model, "blocks"))
    norms = set(select(tiny_model, "blocks+norms")) - blocks
    assert norms == {
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.1.input_layernorm.weight",
        "model.layers.1.post_attention_layernorm.weight",
        "model.norm.weight",
    }
    assert set(select(tiny_model, "blocks+embed")) - blocks == {
        "model.embed_tokens.weight",
        "lm_head.weight",
    }
    assert select(tiny_model, "all") == [n for n, _ in tiny_model.named_parameters()]
    assert "all" in SCOPES and "blocks" in SCOPES


def test_regex_and_union(tiny_model):
    assert select(tiny_model, r"re:lm_head") == ["lm_head.weight"]
    union = select(tiny_model, "blocks,re:lm_head")
    assert union[-1] == "lm_head.weight" and len(union) == 15
    # a comma inside a regex quantifier belongs to the regex
    assert select(tiny_model, r"re:layers\.[01]{1,1}\.self_attn\.q_proj") == [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.q_proj.weight",
    ]


@pytest.mark.parametrize("bad", ["re:does_not_exist", "blokcs", "re:(", ""])
def test_bad_scopes_raise(tiny_model, bad):
    with pytest.raises(LandscapeError):
        select(tiny_model, bad)


def test_gpt2_style_names_from_a_dict():
    sd = {
        "transformer.wte.weight": torch.zeros(10, 4),
        "transformer.h.0.ln_1.weight": torch.zeros(4),
        "transformer.h.0.attn.c_attn.weight": torch.zeros(4, 12),
        "transformer.h.0.attn.c_attn.bias": torch.zeros(12),
        "transformer.h.0.mlp.c_fc.weight": torch.zeros(4, 16),
        "transformer.ln_f.weight": torch.zeros(4),
        "lm_head.weight": torch.zeros(10, 4),
    }
    assert select(sd) == ["transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight"]
    assert "transformer.ln_f.weight" in select(sd, "blocks+norms")
    assert {"transformer.wte.weight", "lm_head.weight"} <= set(select(sd, "blocks+embed"))


def test_tied_weights_appear_once(tiny_tokenizer):
    model = make_tiny_model(tiny_tokenizer)
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight
    for source in (model, model.state_dict()):
        names = select(source, "all")
        assert len(names) == len(set(names))
        assert ("lm_head.weight" in names) != ("model.embed_tokens.weight" in names)
