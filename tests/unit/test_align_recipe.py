"""The alignment recipe's data: disjoint splits with no near-copy across them, refusals the
keyword judge recognises, benign prompts it does not flag, and the quality measures."""

from __future__ import annotations

import itertools
import random

import pytest
from helpers import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape.align import texts
from landscape.align.evaluate import eval_harmful, token_f1
from landscape.align.recipe import (
    NEAR_DUPLICATE,
    capital_correct,
    jaccard,
    make_recipe,
    near_duplicate_groups,
    read_advbench,
    refusal,
    whole_sentences,
    words,
)
from landscape.errors import LandscapeError
from landscape.judges.keyword import KeywordJudge

ADVBENCH = SHARED_DATA / "advbench" / "harmful_behaviors.csv"
HARMBENCH = SHARED_DATA / "harmbench" / "harmbench_behaviors_text_test.csv"
needs_data = pytest.mark.skipif(
    not (ADVBENCH.is_file() and HARMBENCH.is_file()),
    reason="AdvBench/HarmBench not beside the repo",
)


@pytest.fixture(scope="module")
def recipe():
    return make_recipe(ADVBENCH, HARMBENCH, seed=0)


@needs_data
def test_held_out_harmful_requests_have_no_near_copy_in_training(recipe):
    train = [words(g) for g, _ in recipe.harmful_train]
    held = [p for p, _ in recipe.harmful_eval]
    assert not {g for g, _ in recipe.harmful_train} & set(held)
    worst = max(jaccard(words(p), t) for p in held for t in train)
    assert worst < NEAR_DUPLICATE
    sources = {s for _, s in recipe.harmful_eval}
    assert sources == {"advbench", "harmbench"}
    # every AdvBench row is on exactly one side
    n_adv = sum(1 for _, s in recipe.harmful_eval if s == "advbench")
    assert n_adv + len(recipe.harmful_train) == len(read_advbench(ADVBENCH)) == 520


@needs_data
def test_benign_splits_are_disjoint_and_cover_every_prompt(recipe):
    for train, held, every in (
        (recipe.lookalike_train, recipe.lookalike_eval, texts.LOOKALIKES),
        (recipe.everyday_train, recipe.everyday_eval, texts.everyday()),
        (recipe.capitals_train, recipe.capitals_eval, None),
    ):
        assert not set(train) & set(held)
        if every is not None:
            assert sorted([*train, *held]) == sorted(every)
    assert len(recipe.capitals_train) + len(recipe.capitals_eval) == len(texts.CAPITALS)
    assert not set(recipe.benign_train()) & {
        *recipe.lookalike_eval,
        *recipe.everyday_eval,
        *(q for q, _ in recipe.capitals_eval),
    }


@needs_data
def test_the_split_depends_on_the_seed_only(recipe):
    assert make_recipe(ADVBENCH, HARMBENCH, seed=0) == recipe
    assert make_recipe(ADVBENCH, HARMBENCH, seed=1).harmful_train != recipe.harmful_train


def test_every_refusal_the_recipe_can_write_is_one_to_the_keyword_judge():
    judge = KeywordJudge()
    combos = [
        " ".join(p for p in parts if p)
        for parts in itertools.product(
            texts.REFUSAL_OPENINGS, texts.REFUSAL_REASONS, texts.REFUSAL_OFFERS
        )
    ]
    assert not any(judge.judge(combos, combos))  # unsafe = no refusal string
    drawn = {refusal(random.Random(s)) for s in range(200)}
    assert drawn <= set(combos) and len(drawn) > 50  # varied


def test_no_benign_prompt_holds_a_refusal_string():
    judge = KeywordJudge()
    prompts = [
        *texts.LOOKALIKES,
        *texts.everyday(),
        *(texts.capital_question(c) for c, _ in texts.CAPITALS),
    ]
    assert all(judge.judge(prompts, prompts))
    assert len(set(prompts)) == len(prompts)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from("ab cd ef gh ij kl mn".split()), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    )
)
def test_near_duplicates_always_share_a_group(word_lists):
    prompts = [" ".join(w) for w in word_lists]
    groups = near_duplicate_groups(prompts)
    where = {i: k for k, g in enumerate(groups) for i in g}
    assert sorted(where) == list(range(len(prompts)))
    for i, j in itertools.combinations(range(len(prompts)), 2):
        if jaccard(words(prompts[i]), words(prompts[j])) >= NEAR_DUPLICATE:
            assert where[i] == where[j]


@given(st.text(alphabet="ab .!\n", max_size=60))
def test_whole_sentences_is_a_prefix_ending_a_sentence_or_the_whole(answer):
    whole, cut = answer.rstrip(), whole_sentences(answer)
    assert whole.startswith(cut) and (cut or not whole)
    assert cut == whole or cut[-1] in ".!?" or whole[len(cut)].isspace()


def test_whole_sentences_drops_the_unfinished_tail():
    assert whole_sentences("First point. Second point is cut mid") == "First point."
    assert whole_sentences("Done.") == "Done."


def test_token_f1_and_capital_match():
    assert token_f1("the capital is Lima", "The capital is Lima.") == 1.0
    assert token_f1("abc", "xyz") == 0.0
    assert token_f1("a b", "a c") == token_f1("a c", "a b") == 0.5
    assert capital_correct("The capital of Peru is lima.", ("Lima",))
    assert not capital_correct("It is Cusco.", ("Lima",))


@needs_data
def test_evaluation_sample_is_seeded_and_balanced(recipe):
    a = eval_harmful(recipe, 80, seed=0)
    assert a == eval_harmful(recipe, 80, seed=0) and len(set(a)) == 80
    src = dict(recipe.harmful_eval)
    assert sum(src[p] == "advbench" for p in a) == 40


def test_an_advbench_file_without_targets_is_refused(tmp_path):
    f = tmp_path / "goals.csv"
    f.write_text("goal\nsomething\n")
    with pytest.raises(LandscapeError, match="no compliant opening column"):
        read_advbench(f)
    with pytest.raises(LandscapeError, match="not found"):
        read_advbench(tmp_path / "missing.csv")
