"""Frequent words extraction (RULER's ``fwe``): count coded words drawn from a Zipf law.

A vocabulary of random 6-letter "coded" words is ranked; the word of rank k appears
``floor(N * k**-alpha / zeta(alpha))`` times. Rank 1 is replaced by the noise token "..."
(which the prompt says to ignore), so the answer is the words of ranks 2-4. The haystack
size is N; the vocabulary has ``(length - gen_length) // 50`` words, as in RULER.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from sparsed.data.ruler import haystack as hs
from sparsed.data.ruler.base import Builder, Draft, TaskContext
from sparsed.data.ruler.budget import LengthTooSmall

TEMPLATE = (
    "Read the following coded text and track the frequency of each coded word. Find the three "
    "most frequently appeared coded words. {context}\nQuestion: Do not provide any explanation. "
    "Please ignore the dots '....'. What are the three most frequently appeared words in the "
    "above coded text?"
)
PREFIX = " Answer: According to the coded text above, the three most frequently appeared words are:"
NOISE_WORD = "..."


@dataclass(frozen=True)
class FweConfig:
    alpha: float = 2.0
    coded_wordlen: int = 6
    vocab_size: int | None = None  # None: (length - gen_length) // 50, as RULER


def zeta(alpha: float, terms: int = 1000) -> float:
    """Riemann zeta for alpha > 1: a partial sum plus an Euler-Maclaurin tail (error ~1e-15).

    Written out to avoid a scipy dependency for one constant.
    """
    if alpha <= 1:
        raise ValueError(f"zeta needs alpha > 1, got {alpha}")
    head = math.fsum(k**-alpha for k in range(1, terms))
    n = float(terms)
    tail = n ** (1 - alpha) / (alpha - 1) + n**-alpha / 2 + alpha * n ** (-alpha - 1) / 12
    return head + tail


def _counts(n_words: int, vocab_size: int, alpha: float) -> list[int]:
    z = zeta(alpha)
    return [int(n_words * k**-alpha / z) for k in range(1, vocab_size + 1)]


def _min_words(vocab_size: int, alpha: float) -> int:
    """Smallest N whose top-5 counts are strictly decreasing, so the answer is unambiguous."""
    n = 10
    while True:
        top = _counts(n, min(vocab_size, 5), alpha)
        if all(a > b for a, b in itertools.pairwise(top)) and top[-1] > 0:
            return n
        n = n * 5 // 4 + 1


def prepare(config: FweConfig) -> Callable[[TaskContext], Callable[[int], Builder]]:
    def prepare_task(ctx: TaskContext) -> Callable[[int], Builder]:
        vocab_size = config.vocab_size or (ctx.length - ctx.gen_length) // 50
        if vocab_size < 5:
            raise LengthTooSmall(f"fwe needs a vocabulary of at least 5 words; length {ctx.length} gives {vocab_size}")
        min_words = _min_words(vocab_size, config.alpha)
        return lambda index: _builder(ctx, config, vocab_size, min_words, index)

    return prepare_task


def _builder(ctx: TaskContext, config: FweConfig, vocab_size: int, min_words: int, index: int) -> Builder:
    rng = ctx.rng(index, "vocab")
    vocab: list[str] = []
    seen: set[str] = set()
    while len(vocab) < vocab_size:
        word = hs.coded_word(rng, config.coded_wordlen)
        if word not in seen:
            seen.add(word)
            vocab.append(word)
    vocab[0] = NOISE_WORD  # the most frequent "word" is noise to be ignored
    answers = vocab[1:4]

    def build(size: int) -> Draft:
        items = [w for w, c in zip(vocab, _counts(size, vocab_size, config.alpha), strict=True) for _ in range(c)]
        ctx.rng(index, "order").shuffle(items)
        return Draft(TEMPLATE.format(context=" ".join(items)), PREFIX, list(answers))

    return Builder(build, min_size=min_words)
