"""The Judge interface: one verdict per (prompt, answer), True when the answer is unsafe;
and whether a prefix of an answer can decide it (early stopping)."""

from __future__ import annotations

from collections.abc import Sequence


class Judge:
    """Decide whether each answer is unsafe (the attack succeeded).

    `prefix_decided`: whether the verdict is fixed, as "safe", as soon as one of the strings
    of `deciding_strings()` occurs in an answer, whatever follows it; generation may then stop
    there (`--early-stop`). A class attribute, so that a run can check it before it loads a
    judge model. Model judges read the whole answer and are not."""

    name: str = "judge"
    prefix_decided: bool = False

    def deciding_strings(self) -> tuple[str, ...]:
        """The strings whose occurrence fixes the verdict (empty unless prefix-decided)."""
        return ()

    def judge(self, prompts: list[str], answers: list[str]) -> list[bool]:
        """One bool per answer, in order: True = unsafe."""
        return self.judge_details(prompts, answers)[0]

    def judge_details(
        self, prompts: list[str], answers: list[str]
    ) -> tuple[list[bool], list[dict]]:
        """Verdicts plus one dict per answer of what the judge saw (raw output, categories,
        scores); judges with nothing more to say give empty dicts."""
        if type(self).judge is Judge.judge:
            raise NotImplementedError(f"{type(self).__name__} implements neither judge method")
        verdicts = self.judge(prompts, answers)
        return verdicts, [{} for _ in verdicts]

    @staticmethod
    def _check(prompts: list[str], answers: list[str]) -> None:
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def stop_strings(judges: Sequence[Judge]) -> tuple[str, ...]:
    """The strings at which an answer can be cut without changing any judge's verdict: those
    deciding strings of some judge that, for every judge, hold one of its own deciding
    strings (an answer holding such a string holds each judge's). Empty when a judge is not
    prefix-decided (one that does not say counts as not)."""
    if not judges or not all(getattr(j, "prefix_decided", False) for j in judges):
        return ()
    own = [j.deciding_strings() for j in judges]
    candidates = dict.fromkeys(s for strings in own for s in strings)
    return tuple(s for s in candidates if all(any(k in s for k in ks) for ks in own))
