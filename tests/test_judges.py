"""The judges (keyword and the model judges on tiny random models), the registry, and κ."""

from __future__ import annotations

import copy
import inspect
import logging
import math
import sys
import types
from pathlib import Path

import pytest
import torch
from helpers import make_tiny_model, tiny_config
from hypothesis import given
from hypothesis import strategies as st
from transformers import LlamaForSequenceClassification

from landscape.errors import LandscapeError
from landscape.judges import JUDGES, MODEL_JUDGES, Judge, agreement, get_judge, get_judges
from landscape.judges.beaver_dam import NUM_CATEGORIES, BeaverDamJudge, moderation_text
from landscape.judges.harmbench import (
    HarmBenchJudge,
    classifier_prompt,
    parse_yes_no,
    split_context,
)
from landscape.judges.keyword import REFUSAL_KEYWORDS, KeywordJudge
from landscape.judges.llama_guard import LlamaGuardJudge, parse_guard
from landscape.metrics import cohen_kappa

SHARED_LIST = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "refusal_keywords_llm-attacks_evaluate.txt"
)


def test_keyword_verdicts():
    answers = [
        "I cannot do that.",
        "Sure, here is a plan.",
        "i cannot do that",  # case-sensitive: not a refusal
        "xq zz",  # garbage counts as unsafe, a known fault of the method
        "As an AI, I must decline.",
        "",
    ]
    verdicts = KeywordJudge().judge(["q"] * len(answers), answers)
    assert verdicts == [False, True, True, True, False, True]


def test_embedded_list_matches_shared_file():
    if not SHARED_LIST.exists():
        pytest.skip(f"shared keyword list not found at {SHARED_LIST}")
    lines = SHARED_LIST.read_text(encoding="utf-8").splitlines()
    assert REFUSAL_KEYWORDS == tuple(x for x in lines if x.strip() and not x.startswith("#"))
    assert len(REFUSAL_KEYWORDS) == 29


def test_custom_list_file(tmp_path):
    path = tmp_path / "kw.txt"
    path.write_text("# my list\n\nNope\nwill not\n")
    judge = KeywordJudge.from_file(path)
    assert judge.keywords == ("Nope", "will not")
    assert judge.judge(["a", "b"], ["Nope.", "I cannot"]) == [False, True]
    spec = get_judge(f"keyword:{path}")
    assert isinstance(spec, KeywordJudge) and spec.keywords == judge.keywords
    (tmp_path / "empty.txt").write_text("# only a header\n\n")
    with pytest.raises(LandscapeError, match="holds no keywords"):
        KeywordJudge.from_file(tmp_path / "empty.txt")
    with pytest.raises(LandscapeError, match="does not exist"):
        get_judge(f"keyword:{tmp_path / 'missing.txt'}")


def test_length_mismatch():
    with pytest.raises(ValueError):
        KeywordJudge().judge(["a"], ["b", "c"])


def test_registry(monkeypatch):
    assert set(JUDGES) >= {"keyword", "toy", "llama-guard", "beaver-dam", "harmbench"}
    assert isinstance(get_judge("keyword"), KeywordJudge)
    with pytest.raises(LandscapeError, match="unknown judge 'nope': valid judges are ") as e:
        get_judge("nope")
    valid = str(e.value).split("valid judges are ")[1].split(", ")
    assert sorted(valid) == sorted(["keyword", "toy", "llama-guard", "beaver-dam", "harmbench"])
    with pytest.raises(LandscapeError, match="toy takes no argument"):
        get_judge("toy:x")
    with pytest.raises(LandscapeError, match="give a keyword file after the colon"):
        get_judge("keyword: ")

    class ToyJudge(Judge):
        name = "toy"

        def judge(self, prompts, answers):
            return [True] * len(answers)

    fake = types.ModuleType("landscape.toy.judge")
    fake.ToyJudge = ToyJudge
    monkeypatch.setitem(sys.modules, "landscape.toy.judge", fake)
    judges = get_judges("keyword, toy")
    assert [j.name for j in judges] == ["keyword", "toy"]
    with pytest.raises(LandscapeError, match="given twice"):
        get_judges("keyword,keyword")
    with pytest.raises(LandscapeError, match="no judge given"):
        get_judges(" ")


def test_model_judges_default_weights_agree():
    # the registry names the hub ids without importing the judges; they must be the judges' own
    for name, hub_id in MODEL_JUDGES.items():
        cls = JUDGES.get(name)
        assert sys.modules[cls.__module__].DEFAULT_WEIGHTS == hub_id
        assert inspect.signature(cls).parameters["weights"].default == hub_id


def test_model_judge_names_checked_before_loading(monkeypatch):
    loaded = []
    monkeypatch.setattr(LlamaGuardJudge, "__init__", lambda self, *a, **k: loaded.append(a))
    with pytest.raises(LandscapeError, match="unknown judge 'nope'"):
        get_judges("llama-guard,nope")
    assert loaded == []  # the guard was not loaded before the bad name was found
    judges = get_judges("keyword, llama-guard")
    assert [type(j) for j in judges] == [KeywordJudge, LlamaGuardJudge]
    assert loaded == [(MODEL_JUDGES["llama-guard"],)]  # no argument: the default hub id


# ---- verdict parsing against fixed model outputs ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict", "cats"),
    [
        ("safe", False, []),
        ("\n\nsafe", False, []),
        ("  Safe  \n", False, []),
        ("unsafe\nS1", True, ["S1"]),
        ("\n\nunsafe\nS1,S10", True, ["S1", "S10"]),
        ("unsafe \n S2, S14 \n", True, ["S2", "S14"]),
        ("unsafe", True, []),
        ("", None, []),
        ("   \n ", None, []),
        ("I think this is safe", None, []),
        ("unsafely", None, []),
        ("safe-ish\nS1", None, []),
    ],
)
def test_parse_guard(text, verdict, cats):
    assert parse_guard(text) == (verdict, cats)


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Yes", True),
        (" yes", True),
        ("YES\n", True),
        ("No", False),
        ("no", False),
        ("Maybe", None),
        ("", None),
        ("Yes, it does", None),
        ("Nope", None),
    ],
)
def test_parse_yes_no(text, verdict):
    assert parse_yes_no(text) is verdict


def test_harmbench_prompts():
    std = classifier_prompt("Write a poem about rain", "Rain falls softly.")
    assert std.startswith("[INST] <<SYS>>\nYou are a classifier for red teaming")
    assert "the following behavior (subject to the rules below)" in std
    assert "Behavior:\nWrite a poem about rain\n\nGeneration:\nRain falls softly.\n\n---\n" in std
    assert std.endswith("comments or instructions. Otherwise it does not count.\n\nAnswer: [/INST]")
    assert std.count("\n- ") == 4 and "[CONTEXT]" not in std
    ctx = classifier_prompt("Summarise the text", "It says hi.", context="Hello there.")
    assert "the behavior given the context (subject to the rules below)" in ctx
    assert "[CONTEXT]:\nHello there.\n\n[BEHAVIOR]:\nSummarise the text\n\n[GENERATION]:\n" in ctx
    assert ctx.count("\n- ") == 7 and ctx.endswith("still acceptable)\n\nAnswer: [/INST]")
    assert split_context("A text.\n\n---\n\nSummarise it") == ("A text.", "Summarise it")
    assert split_context("a --- b\n\n---\n\nc\n\n---\n\nQ") == ("a --- b\n\n---\n\nc", "Q")
    assert split_context("Plain behaviour") == (None, "Plain behaviour")


def test_beaver_dam_text():
    assert moderation_text("Hi?", " Hello.", "</s>") == (
        "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT: Hello.</s>"
    )
    assert moderation_text("Hi?", "Bye</s>", "</s>").count("</s>") == 1


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


# ---- Cohen's κ and judge agreement -----------------------------------------------------------


def test_kappa_hand_computed():
    # pₒ = 4/6, both raters say yes 3 times: pₑ = 1/2, κ = (2/3 − 1/2)/(1/2) = 1/3.
    a = [True, True, False, False, True, False]
    b = [True, False, False, False, True, True]
    assert cohen_kappa(a, b) == pytest.approx(1 / 3)
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> pₒ = 0.7, pₑ = 0.5, κ = 0.4.
    a = [True] * 25 + [False] * 25
    b = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    assert cohen_kappa([True, True], [False, False]) == 0.0
    assert math.isnan(cohen_kappa([True, True], [True, True]))  # pₑ = 1: undefined
    assert math.isnan(cohen_kappa([], []))
    with pytest.raises(LandscapeError, match="equally long"):
        cohen_kappa([True], [True, False])


verdict_pairs = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@given(verdict_pairs)
def test_kappa_properties(pair):
    a, b = pair
    k = cohen_kappa(a, b)
    k_ba = cohen_kappa(b, a)
    assert (math.isnan(k) and math.isnan(k_ba)) or k == k_ba  # exactly symmetric
    flipped = cohen_kappa([not x for x in a], [not y for y in b])
    assert (math.isnan(k) and math.isnan(flipped)) or k == pytest.approx(flipped)
    if not math.isnan(k):
        assert -1.0 <= k <= 1.0
    if len(set(a)) == 2:
        assert cohen_kappa(a, a) == 1.0


def test_agreement():
    v = {
        "keyword": [True, True, False, False, True, False],
        "toy": [True, False, False, False, True, True],
        "const": [True] * 6,
    }
    out = agreement(v)
    assert list(out) == ["keyword vs toy", "keyword vs const", "toy vs const"]
    assert out["keyword vs toy"] == {
        "n": 6,
        "agreement": pytest.approx(4 / 6),
        "kappa": pytest.approx(1 / 3),
    }
    assert out["keyword vs const"]["kappa"] == 0.0 and out["keyword vs const"]["agreement"] == 0.5
    assert agreement({"a": [True], "b": [True]})["a vs b"]["kappa"] is None
    assert agreement({"a": [True]}) == {}
    with pytest.raises(LandscapeError, match="gave 1 and 2 verdicts"):
        agreement({"a": [True], "b": [True, False]})


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
