"""The project's arithmetic word problems: right answers in the FA rule's format, distinct,
train and test disjoint, one draw per seed."""

import json
import operator
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from landscape.align.arith import main, problems, write_task
from landscape.asft.data import answer_correct, load_task
from landscape.errors import LandscapeError

WORK = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\. The final answer is: (\d+)$")
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_every_answer_is_right_and_scored_right(seed):
    recs = problems(60, seed)
    assert len({r["instruction"] for r in recs}) == 60
    for r in recs:
        a, op, b, c, final = WORK.match(r["output"]).groups()
        assert OPS[op](int(a), int(b)) == int(c) == int(final) >= 0
        if op == "/":
            assert int(a) % int(b) == 0
        # The numbers of the problem are in its text: the question states the task.
        assert a in r["instruction"] and b in r["instruction"]
        assert answer_correct(r["output"], r["output"])
        assert not answer_correct(f"The final answer is: {int(c) + 1}", r["output"])


def test_files_load_as_a_task_with_disjoint_splits(tmp_path):
    train, test = write_task(tmp_path, n_train=80, n_test=20, seed=3)
    task = load_task(f"{train},{test}")
    assert (len(task.train), len(task.test)) == (80, 20)
    assert not {q for q, _ in task.train} & {q for q, _ in task.test}
    assert problems(100, 3) == [json.loads(x) for f in (train, test) for x in f.open()]
    assert problems(100, 3) != problems(100, 4)


def test_bad_sizes(tmp_path, capsys):
    with pytest.raises(LandscapeError):
        write_task(tmp_path / "t", n_train=0)
    assert main(["--out", str(tmp_path / "u"), "--n-test", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "u").exists()
