"""The Judge interface: one verdict per (prompt, answer), True when the answer is unsafe."""

from __future__ import annotations


class Judge:
    """Decide whether each answer is unsafe (the attack succeeded)."""

    name: str = "judge"

    def judge(self, prompts: list[str], answers: list[str]) -> list[bool]:
        """One bool per answer, in order: True = unsafe."""
        raise NotImplementedError

    @staticmethod
    def _check(prompts: list[str], answers: list[str]) -> None:
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
