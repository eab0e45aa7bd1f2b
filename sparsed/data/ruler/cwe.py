"""Common words extraction (RULER's ``cwe``): name the 10 most repeated words of a long list.

Ten "common" words appear ``freq_cw`` times each, every other word ``freq_ucw`` times, all
shuffled into a numbered list. The haystack size is the number of distinct words. One worked
example (a short list and its answer) precedes the question, as in RULER; below 4096 tokens
RULER lowers the repetition counts (6 and 1) and shortens the example, and so do we.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sparsed.data.ruler import haystack as hs
from sparsed.data.ruler.base import Builder, Draft, TaskContext

TEMPLATE = (
    "Below is a numbered list of words. In these words, some appear more often than others. "
    "Memorize the ones that appear most often.\n{context}\n"
    "Question: What are the {num_cw} most common words in the above list?"
)
PREFIX = " Answer: The top {num_cw} words that appear most often in the list are:"


@dataclass(frozen=True)
class CweConfig:
    freq_cw: int = 30
    freq_ucw: int = 3
    num_cw: int = 10
    num_fewshot: int = 1


class _WordSource:
    """A per-sample random order of the vocabulary, extended with made-up words if exhausted.

    RULER switches to a larger English word list past the ~9k wonderwords; we have no such
    list offline, so beyond it we append random lowercase pseudo-words (rare: only past
    ~128k tokens with most tokenizers).
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._words = list(hs.common_word_pool())
        rng.shuffle(self._words)
        self._seen = set(self._words)

    def first(self, count: int) -> list[str]:
        while len(self._words) < count:
            word = hs.coded_word(self._rng, self._rng.randint(5, 9))
            if word not in self._seen:
                self._seen.add(word)
                self._words.append(word)
        return self._words[:count]


def _numbered(words: list[str]) -> str:
    return " ".join(f"{i + 1}. {w}" for i, w in enumerate(words))


def _word_list(words: list[str], num_cw: int, freq_cw: int, freq_ucw: int, rng: random.Random) -> list[str]:
    items = words[:num_cw] * freq_cw + words[num_cw:] * freq_ucw
    rng.shuffle(items)
    return items


def prepare(config: CweConfig) -> Callable[[TaskContext], Callable[[int], Builder]]:
    def prepare_task(ctx: TaskContext) -> Callable[[int], Builder]:
        if ctx.length < 4096:
            main, example = (6, 1), (20, 3, 1)
        else:
            main, example = (config.freq_cw, config.freq_ucw), (40, 10, 3)
        return lambda index: _builder(ctx, config, main, example, index)

    return prepare_task


def _builder(
    ctx: TaskContext,
    config: CweConfig,
    main: tuple[int, int],
    example: tuple[int, int, int],
    index: int,
) -> Builder:
    num_cw = config.num_cw
    shots = []
    for shot in range(config.num_fewshot):
        rng = ctx.rng(index, f"fewshot{shot}")
        n_words, freq_cw, freq_ucw = example
        words = rng.sample(hs.common_word_pool(), n_words)
        listing = _numbered(_word_list(words, num_cw, freq_cw, freq_ucw, rng))
        shots.append(
            TEMPLATE.format(num_cw=num_cw, context=listing) + PREFIX.format(num_cw=num_cw) + " " + _numbered(words[:num_cw])
        )
    header = "".join(s + "\n" for s in shots)
    source = _WordSource(ctx.rng(index, "words"))
    prefix = PREFIX.format(num_cw=num_cw)

    def build(size: int) -> Draft:
        words = source.first(size)
        items = _word_list(words, num_cw, *main, ctx.rng(index, "order"))
        text = header + TEMPLATE.format(num_cw=num_cw, context=_numbered(items))
        return Draft(text, prefix, words[:num_cw])

    return Builder(build, min_size=num_cw + 1)
