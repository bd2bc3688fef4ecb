"""The built-in offline toy world: a tiny base/aligned pair, its tasks, prompts and judge."""

from landscape.toy.build import ToyPair, toy_finetune, toy_pair

__all__ = ["ToyPair", "toy_finetune", "toy_pair"]
