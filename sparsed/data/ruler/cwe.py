"""Common words extraction (RULER's ``cwe``): name the 10 most repeated words of a long list.

Ten "common" words appear ``freq_cw`` times each, every other word ``freq_ucw`` times, all
shuffled into a numbered list. The haystack size is the number of distinct words. One worked
example (a short list and its answer) precedes the question, as in RULER; below 4096 tokens
RULER lowers the repetition counts (6 and 1) and shortens the example, and so do we.

RULER formats the example with the whole prompt template: under a chat template it is a chat
turn of its own (user header, example, assistant header, answer prefix, answer), followed by a
newline and the chat-wrapped question; that turn is the sample's ``preamble``. Without a chat
template both are plain text in the user message.

Words come from the wonderwords nouns, adjectives and verbs (~8k). A list longer than that
(near 128k tokens) is drawn by RULER from a second list, its ``english_words.json``, which no
package ships: pass its path as ``cwe_words_path``; without it, made-up lowercase words extend
the vocabulary and the samples say so (``notes``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sparsed.data.ruler import haystack as hs
from sparsed.data.ruler.base import Builder, Draft, TaskContext
from sparsed.data.ruler.budget import render_prompt, uses_chat_template

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


PSEUDO_WORDS_NOTE = (
    "cwe needs more words than the {pool} wonderwords: RULER then draws from its english_words.json, "
    "which is not available here, so made-up words were used; pass cwe_words_path=<that file> to match"
)


class _WordSource:
    """A per-sample random order of the vocabulary: RULER's list for the size asked for.

    Up to the wonderwords pool, a prefix of a shuffled pool (a uniform random sample, as RULER's
    ``random.sample``). Past it, RULER samples the whole list from its second word list: a prefix
    of that list shuffled, where given; else the pool extended with made-up words.
    """

    def __init__(self, rng: random.Random, second: tuple[str, ...] | None) -> None:
        self._rng = rng
        self._words = list(hs.common_word_pool())
        rng.shuffle(self._words)
        self._second = second
        self._second_order: list[str] | None = None
        self._seen = set(self._words)

    def first(self, count: int) -> tuple[list[str], tuple[str, ...]]:
        """(the first ``count`` words, notes)."""
        pool = len(hs.common_word_pool())
        if count <= pool:
            return self._words[:count], ()
        if self._second is not None:
            if count > len(self._second):
                raise hs.DataUnavailable(f"cwe needs {count} words; the second word list has {len(self._second)}")
            if self._second_order is None:
                self._second_order = list(self._second)
                random.Random(self._rng.random()).shuffle(self._second_order)
            return self._second_order[:count], ()
        while len(self._words) < count:
            word = hs.coded_word(self._rng, self._rng.randint(5, 9))
            if word not in self._seen:
                self._seen.add(word)
                self._words.append(word)
        return self._words[:count], (PSEUDO_WORDS_NOTE.format(pool=pool),)


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
        second = hs.load_word_list(ctx.cwe_words_path) if ctx.cwe_words_path is not None else None
        return lambda index: _builder(ctx, config, main, example, second, index)

    return prepare_task


def _builder(
    ctx: TaskContext,
    config: CweConfig,
    main: tuple[int, int],
    example: tuple[int, int, int],
    second: tuple[str, ...] | None,
    index: int,
) -> Builder:
    num_cw = config.num_cw
    prefix = PREFIX.format(num_cw=num_cw)
    chat = uses_chat_template(ctx.tokenizer, ctx.chat_template)
    shots = []
    for shot in range(config.num_fewshot):
        rng = ctx.rng(index, f"fewshot{shot}")
        n_words, freq_cw, freq_ucw = example
        words = rng.sample(hs.common_word_pool(), n_words)
        question = TEMPLATE.format(num_cw=num_cw, context=_numbered(_word_list(words, num_cw, freq_cw, freq_ucw, rng)))
        # RULER fills its whole prompt template (chat turn and answer prefix) with the example.
        shot_text = render_prompt(ctx.tokenizer, question, prefix, chat).text if chat else question + prefix
        shots.append(shot_text + " " + _numbered(words[:num_cw]))
    header = "".join(s + "\n" for s in shots)
    source = _WordSource(ctx.rng(index, "words"), second)

    def build(size: int) -> Draft:
        words, notes = source.first(size)
        items = _word_list(words, num_cw, *main, ctx.rng(index, "order"))
        text = TEMPLATE.format(num_cw=num_cw, context=_numbered(items))
        if chat:
            return Draft(text, prefix, words[:num_cw], preamble=header, notes=notes)
        return Draft(header + text, prefix, words[:num_cw], notes=notes)

    return Builder(build, min_size=num_cw + 1)
