"""A byte-level BPE tokenizer trained locally, with a chat template, as a transformers tokenizer."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, USER, ASSISTANT, SYSTEM = (
    "<s>",
    "</s>",
    "<pad>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
)

# Each turn is "<|role|>\n{content}</s>\n"; the generation prompt is "<|assistant|>\n".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `corpus`; any text encodes, corpus words mostly as one token."""
    tok = Tokenizer(models.BPE())
    # Digits one by one so that arithmetic answers share their tokens across numbers.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, USER, ASSISTANT, SYSTEM],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM],
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def vocab_rows(tokenizer) -> int:
    """Embedding rows needed: the largest id + 1, which can exceed len(tokenizer)."""
    return max(tokenizer.get_vocab().values()) + 1
