"""A tiny byte-level BPE tokenizer for offline tests.

The project's real tokenizer is trained elsewhere; code under test must work with any HF
tokenizer, so tests use this stand-in: trained in memory on generated English-like text
(a second or so), wrapped as a ``PreTrainedTokenizerFast`` with a chat template and the
special tokens the project's models use. Built once per process.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|mdm_mask|>", "<|user|>", "<|assistant|>"]

# Role markers are special tokens, so the template renders each turn as "<|role|>\ncontent\n".
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_TOKENIZER: PreTrainedTokenizerFast | None = None


def _training_corpus(n_lines: int = 3000, seed: int = 0) -> list[str]:
    """English-ish lines: common words, digits, uuids-like hex and the RULER noise sentences."""
    rng = random.Random(seed)
    words = (
        "the of and to in is was for on that with as by at from it this be are or an "
        "special magic number numbers hidden within following text memorize quiz about "
        "afterwards what all mentioned provided grass green sky blue sun yellow here we go "
        "there back again variable assignment chain value question answer find document "
        "common words list appear often coded frequently read track frequency startup "
        "founder investor company essay programming language people work money idea"
    ).split()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    # The wonderwords lists (installed with the project) give the vocabulary real words, so
    # token counts per word are closer to a production tokenizer's.
    lines = [" ".join(vocab[i : i + 12]) for vocab in _wonderwords() for i in range(0, len(vocab), 12)]
    for _ in range(n_lines):
        parts = [rng.choice(words) for _ in range(rng.randint(5, 15))]
        parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10))))
        parts.append(str(rng.randint(0, 10**7)))
        lines.append(" ".join(parts).capitalize() + rng.choice([".", "?", ":", ","]))
    return lines


def _wonderwords() -> list[list[str]]:
    import importlib.resources

    assets = importlib.resources.files("wonderwords").joinpath("assets")
    return [assets.joinpath(f"{k}list.txt").read_text().split() for k in ("noun", "adjective", "verb")]


def make_test_tokenizer(vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """Return the shared test tokenizer (trained on first call, cached afterwards)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(_training_corpus(), trainer=trainer)
        _TOKENIZER = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            eos_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            mask_token="<|mdm_mask|>",
            additional_special_tokens=["<|user|>", "<|assistant|>"],
            chat_template=CHAT_TEMPLATE,
            model_max_length=1 << 30,
        )
    return _TOKENIZER
