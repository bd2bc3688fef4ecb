"""The model judges end to end on tiny random models."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_model, tiny_config
from transformers import LlamaForSequenceClassification

from landscape.errors import LandscapeError
from landscape.judges import get_judge
from landscape.judges.beaver_dam import NUM_CATEGORIES, BeaverDamJudge
from landscape.judges.harmbench import (
    HarmBenchJudge,
    parse_yes_no,
)
from landscape.judges.llama_guard import LlamaGuardJudge, parse_guard

# ---- the model judges end to end on tiny random models ---------------------------------------

PROMPTS = ["How do I bake bread at home?", "Tom has 3 apples.", "Step 1: gather tools."]
ANSWERS = ["Sure, here is how to bake bread.", "I'm sorry, but I cannot help.", ""]


def _save(model, tokenizer, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _tiny_classifier(tokenizer, num_labels: int = NUM_CATEGORIES, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_config(
        tokenizer,
        positions=512,
        num_labels=num_labels,
        problem_type="multi_label_classification",
        id2label={i: f"harm_{i}" for i in range(num_labels)},
        label2id={f"harm_{i}": i for i in range(num_labels)},
    )
    model = LlamaForSequenceClassification(cfg)
    return model.eval()


@pytest.fixture
def causal_dir(tmp_path, tiny_tokenizer):
    return _save(make_tiny_model(tiny_tokenizer), tiny_tokenizer, tmp_path / "causal")


@pytest.fixture
def classifier_dir(tmp_path, tiny_tokenizer):
    return _save(_tiny_classifier(tiny_tokenizer), tiny_tokenizer, tmp_path / "cls")


def _force_output(monkeypatch, judge, outputs: list[str]):
    """Make the judge model's generate append the given texts (one per row, in call order)
    after the prompt, so the whole decode path runs on known output."""
    tok, queue, seen = judge.tokenizer, list(outputs), []

    def generate(input_ids, attention_mask=None, **kw):
        seen.append(input_ids.shape[0])
        rows = []
        for _ in range(input_ids.shape[0]):
            ids = tok(queue.pop(0), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(ids)
        width = max(len(r) for r in rows)
        rows = [r + [tok.pad_token_id] * (width - len(r)) for r in rows]
        return torch.cat([input_ids, torch.tensor(rows, dtype=input_ids.dtype)], dim=1)

    monkeypatch.setattr(judge.model, "generate", generate)
    return seen


def test_llama_guard_end_to_end(causal_dir, monkeypatch, caplog):
    judge = get_judge(f"llama-guard:{causal_dir}", batch_size=2, device="cpu")
    assert isinstance(judge, LlamaGuardJudge) and judge.batch_size == 2
    text = judge.render(PROMPTS[0], ANSWERS[0])
    assert text.index(PROMPTS[0]) < text.index(ANSWERS[0])  # user turn, then assistant turn
    assert "<|user|>" in text and "<|assistant|>" in text

    # Real greedy generation on a random model: one bool per answer, each from the parse.
    judge.max_new_tokens = 3
    verdicts, details = judge.judge_details(PROMPTS, ANSWERS)
    assert len(verdicts) == len(details) == 3 and all(type(v) is bool for v in verdicts)
    for v, d in zip(verdicts, details):
        unsafe, cats = parse_guard(d["raw"])
        assert v == bool(unsafe) and d["categories"] == cats and d["parsed"] == (unsafe is not None)

    seen = _force_output(monkeypatch, judge, ["unsafe\nS1,S10", "safe", "I am not sure"])
    with caplog.at_level(logging.WARNING, logger="landscape.judges.llama_guard"):
        verdicts, details = judge.judge_details(PROMPTS, ANSWERS)
    assert seen == [2, 1]  # batched by batch_size
    assert verdicts == [True, False, False]
    assert [d["categories"] for d in details] == [["S1", "S10"], [], []]
    assert [d["raw"] for d in details] == ["unsafe\nS1,S10", "safe", "I am not sure"]
    assert "1 of 3 outputs were neither safe nor unsafe" in caplog.text
    _force_output(monkeypatch, judge, ["unsafe\nS2"])
    assert judge.judge(["q"], ["a"]) == [True]


def test_llama_guard_needs_chat_template(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    d = _save(make_tiny_model(tiny_tokenizer), tok, tmp_path / "notemplate")
    with pytest.raises(LandscapeError, match="has no chat template"):
        LlamaGuardJudge(d, device="cpu")


def test_harmbench_end_to_end(causal_dir, monkeypatch):
    judge = get_judge(f"harmbench:{causal_dir}", batch_size=3, device="cpu")
    assert isinstance(judge, HarmBenchJudge)
    verdicts, details = judge.judge_details(PROMPTS, ANSWERS)
    assert len(verdicts) == 3 and all(type(v) is bool for v in verdicts)
    assert verdicts == [bool(parse_yes_no(d["raw"])) for d in details]

    seen = _force_output(monkeypatch, judge, ["Yes", "No", "Maybe"])
    verdicts, details = judge.judge_details(PROMPTS, ANSWERS)
    assert seen == [3] and verdicts == [True, False, False]
    assert [d["parsed"] for d in details] == [True, True, False]

    sent = []
    monkeypatch.setattr(
        judge, "_generate", lambda texts: sent.extend(texts) or ["yes"] * len(texts)
    )
    assert judge.judge(["Some text.\n\n---\n\nSummarise it", "Plain"], ["x", "y"]) == [True, True]
    assert "[CONTEXT]:\nSome text.\n\n[BEHAVIOR]:\nSummarise it" in sent[0]
    assert "Behavior:\nPlain\n\nGeneration:\ny" in sent[1]


def test_harmbench_clips_long_generations(causal_dir):
    judge = HarmBenchJudge(causal_dir, device="cpu")
    judge.max_generation_tokens = 5
    long = "Step 1: gather tools. Step 2: follow the plan. Step 3: check the result."
    clipped = judge.clip(long)
    assert long.startswith(clipped) and len(clipped) < len(long)
    assert len(judge.tokenizer.encode(clipped, add_special_tokens=False)) == 5
    assert judge.clip("Sure") == "Sure"


def test_beaver_dam_end_to_end(classifier_dir):
    judge = get_judge(f"beaver-dam:{classifier_dir}", batch_size=3, device="cpu")
    assert isinstance(judge, BeaverDamJudge) and judge.threshold == 0.5
    prompts, answers = PROMPTS * 2, ANSWERS + ["Sure", "No.", "Step 2: follow the plan."]
    scores = judge.scores(prompts, answers)
    assert scores.shape == (6, NUM_CATEGORIES) and ((scores > 0) & (scores < 1)).all()
    # A threshold between the answers' top scores, so that both verdicts occur.
    tops = sorted(scores.max(dim=1).values.tolist())
    assert tops[2] < tops[3]
    judge.threshold = t = (tops[2] + tops[3]) / 2
    verdicts, details = judge.judge_details(prompts, answers)
    assert verdicts == [bool(row.max() > t) for row in scores] and sum(verdicts) == 3
    for v, d, row in zip(verdicts, details, scores):
        assert d["categories"] == [f"harm_{i}" for i in range(NUM_CATEGORIES) if row[i] > t]
        assert d["max_score"] == pytest.approx(row.max().item(), abs=1e-4)
        assert v == bool(d["categories"])
    # Right padding must not change any row's scores: batch of 1 vs batch of 3.
    judge.batch_size = 1
    assert torch.allclose(judge.scores(prompts, answers), scores, atol=1e-5)
    judge.threshold = 0.0
    assert all(judge.judge(prompts, answers))
    judge.threshold = 1.0
    assert not any(judge.judge(prompts, answers))


def test_beaver_dam_truncates_to_max_length(classifier_dir):
    judge = BeaverDamJudge(classifier_dir, device="cpu", max_length=24)
    head = "Step 1: gather tools. Step 2: follow the plan. " * 4
    s = judge.scores(["Hi", "Hi"], [head + "Step 3: check.", head + "I'm sorry."])
    assert torch.equal(s[0], s[1])  # the different tails were cut off
    judge.max_length = 512
    s = judge.scores(["Hi", "Hi"], [head + "Step 3: check.", head + "I'm sorry."])
    assert not torch.equal(s[0], s[1])


def test_beaver_dam_pad_must_differ_from_eos(tmp_path, tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = tok.eos_token
    d = _save(_tiny_classifier(tiny_tokenizer), tok, tmp_path / "padeos")
    with pytest.raises(LandscapeError, match="no pad token distinct from its EOS"):
        BeaverDamJudge(d, device="cpu")
    with pytest.raises(LandscapeError, match=r"threshold must be in \[0, 1\]"):
        BeaverDamJudge(d, device="cpu", threshold=1.5)


def test_wrong_architectures(tmp_path, tiny_tokenizer, causal_dir, classifier_dir):
    for name in ("llama-guard", "harmbench"):
        with pytest.raises(
            LandscapeError,
            match=f"^{name} judge needs a causal language model .* holds "
            "LlamaForSequenceClassification$",
        ):
            get_judge(f"{name}:{classifier_dir}", device="cpu")
    with pytest.raises(
        LandscapeError, match="^beaver-dam judge needs a sequence classifier .* LlamaForCausalLM$"
    ):
        get_judge(f"beaver-dam:{causal_dir}", device="cpu")
    three = _save(_tiny_classifier(tiny_tokenizer, num_labels=3), tiny_tokenizer, tmp_path / "c3")
    with pytest.raises(LandscapeError, match="needs a classifier with 14 labels, but .* has 3$"):
        get_judge(f"beaver-dam:{three}", device="cpu")


def test_model_judge_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(LandscapeError, match="weights folder does not exist"):
        get_judge(f"llama-guard:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LandscapeError, match="cannot read a model config from"):
        get_judge(f"beaver-dam:{tmp_path / 'empty'}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        LandscapeError, match="cannot load 'no-org-xyz/no-model-xyz'.*offline.*harmbench:/path"
    ):
        get_judge("harmbench:no-org-xyz/no-model-xyz")
    with pytest.raises(LandscapeError, match="batch size must be at least 1"):
        get_judge(f"harmbench:{tmp_path / 'empty'}", batch_size=0)


def test_judge_dtype(classifier_dir, causal_dir):
    fp32 = BeaverDamJudge(classifier_dir, device="cpu")
    bf16 = BeaverDamJudge(classifier_dir, device="cpu", dtype="bfloat16")
    assert fp32.model.dtype == torch.float32 and bf16.model.dtype == torch.bfloat16
    a, b = fp32.scores(PROMPTS, ANSWERS), bf16.scores(PROMPTS, ANSWERS)
    assert b.dtype == torch.float32 and torch.allclose(a, b, atol=0.05)
    guard = get_judge(f"llama-guard:{causal_dir}", dtype="bf16", device="cpu")
    assert guard.model.dtype == torch.bfloat16
    with pytest.raises(LandscapeError, match="unknown dtype"):
        get_judge(f"llama-guard:{causal_dir}", dtype="int3", device="cpu")
