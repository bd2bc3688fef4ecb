"""The judge options that every command shares, declared once: `--judge`,
`--judge-batch-size`, `--judge-dtype` (see landscape.cli for how fields become options)."""

from __future__ import annotations

from dataclasses import dataclass

from landscape.cli import option
from landscape.errors import LandscapeError

JUDGE_HELP = (
    "comma-separated judges: keyword, keyword:FILE, toy, llama-guard[:WEIGHTS], "
    "beaver-dam[:WEIGHTS], harmbench[:WEIGHTS]; the first sets the ASR "
    "(default: keyword, plus the world's judge on a built-in pair such as the toy pair)"
)


@dataclass
class JudgeOptions:
    judge: str | None = option(None, JUDGE_HELP)
    judge_batch_size: int = option(8, "answers per judge-model call")
    judge_dtype: str = option("auto", "judge models' dtype (auto: as stored with their weights)")

    def check_judges(self) -> None:
        """The judge names and batch size, checked without loading any judge model."""
        from landscape.judges import parse_specs

        if self.judge is not None:
            parse_specs(self.judge)
        if self.judge_batch_size < 1:
            raise LandscapeError("--judge-batch-size must be at least 1")

    def judge_spec(self, on_world: bool) -> str:
        """--judge, else the default world's judges on its pair, else keyword."""
        if self.judge is not None:
            return self.judge
        if on_world:
            from landscape.world import get_world

            return get_world().judges
        return "keyword"

    def load_judges(self, on_world: bool, device: str = "auto") -> list:
        """The judges, judge models loaded once (pass them on to reuse them)."""
        from landscape.judges import get_judges

        return get_judges(
            self.judge_spec(on_world),
            batch_size=self.judge_batch_size,
            dtype=self.judge_dtype,
            device=device,
        )
