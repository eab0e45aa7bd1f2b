"""Needle-in-a-haystack tasks (RULER's ``niah`` family, eight configurations).

A needle is "One of the special magic {values} for {key} is: {value}."; keys and values are
words (adjective-noun), 7-digit numbers or uuids. The haystack is RULER's noise sentences,
Paul Graham essays, or (multikey_2/3) more needles with other keys. The question asks for
the values of one or more keys; the gold outputs are all of those values.

Keys, values and distractor needles are independent draws, as in RULER: nothing forces them to
be distinct, so (rarely) two keys coincide or a distractor reuses the queried key.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from sparsed.data.ruler import haystack as hs
from sparsed.data.ruler.base import Builder, Draft, TaskContext

NEEDLE = "One of the special magic {kind} for {key} is: {value}."

# Task text (RULER's wording). With a single expected value RULER rewrites the plural
# template into the singular; both forms are spelled out here.
TEMPLATE_PLURAL = (
    "Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {kind} afterwards.\n{context}\n"
    "What are all the special magic {kind} for {query} mentioned in the provided text?"
)
PREFIX_PLURAL = " The special magic {kind} for {query} mentioned in the provided text are"
TEMPLATE_SINGULAR = (
    "A special magic {kind} is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the {kind} afterwards.\n{context}\n"
    "What is the special magic {kind} for {query} mentioned in the provided text?"
)
PREFIX_SINGULAR = " The special magic {kind} for {query} mentioned in the provided text is"


@dataclass(frozen=True)
class NiahConfig:
    haystack: str  # "noise", "essay" or "needle"
    key_type: str  # "words", "numbers" or "uuids"
    value_type: str
    num_keys: int = 1
    num_values: int = 1
    num_queries: int = 1


CONFIGS: dict[str, NiahConfig] = {
    "niah_single_1": NiahConfig("noise", "words", "numbers"),
    "niah_single_2": NiahConfig("essay", "words", "numbers"),
    "niah_single_3": NiahConfig("essay", "words", "uuids"),
    "niah_multikey_1": NiahConfig("essay", "words", "numbers", num_keys=4),
    "niah_multikey_2": NiahConfig("needle", "words", "numbers"),
    "niah_multikey_3": NiahConfig("needle", "uuids", "uuids"),
    "niah_multivalue": NiahConfig("essay", "words", "numbers", num_values=4),
    "niah_multiquery": NiahConfig("essay", "words", "numbers", num_queries=4),
}


def _join_queries(queries: list[str]) -> str:
    if len(queries) == 1:
        return queries[0]
    return ", ".join(queries[:-1]) + ", and " + queries[-1]


def prepare(config: NiahConfig) -> Callable[[TaskContext], Callable[[int], Builder]]:
    def prepare_task(ctx: TaskContext) -> Callable[[int], Builder]:
        kind = ctx.haystack or config.haystack
        words = hs.essay_words(ctx.essay_path) if kind == "essay" else ()
        if kind not in ("noise", "essay", "needle"):
            raise ValueError(f"unknown haystack {kind!r} (noise, essay or needle)")
        return lambda index: _builder(ctx, config, kind, words, index)

    return prepare_task


def _builder(ctx: TaskContext, config: NiahConfig, kind: str, words: tuple[str, ...], index: int) -> Builder:
    rng = ctx.rng(index, "needles")
    num_keys = max(config.num_keys, config.num_queries)  # every query needs its own key
    keys: list[str] = []
    values: list[list[str]] = []
    for _ in range(num_keys):  # RULER's draw order: a key, then its values
        keys.append(hs.random_needle(rng, config.key_type))
        values.append([hs.random_needle(rng, config.value_type) for _ in range(config.num_values)])
    needles = [NEEDLE.format(kind=config.value_type, key=k, value=v) for k, vs in zip(keys, values, strict=True) for v in vs]
    rng.shuffle(needles)
    depths = rng.sample(hs.DEPTHS, len(needles))
    fractions = [rng.random() for _ in needles]
    queried = rng.sample(range(num_keys), config.num_queries)
    query = _join_queries([keys[i] for i in queried])
    answers = [v for i in queried for v in values[i]]

    plural = config.num_queries * config.num_values > 1
    value_kind = config.value_type if plural else config.value_type[:-1]  # "numbers" -> "number"
    template = TEMPLATE_PLURAL if plural else TEMPLATE_SINGULAR
    prefix = (PREFIX_PLURAL if plural else PREFIX_SINGULAR).format(kind=value_kind, query=query)

    distractors = _DistractorNeedles(ctx.rng(index, "haystack"), config)

    def build(size: int) -> Draft:
        notes: tuple[str, ...] = ()
        if kind == "essay":
            context = hs.insert_at_depths(hs.essay_text(words, size), needles, depths)
            notes = hs.essay_notes(words, size, ctx.essay_path)
        else:
            lines = [hs.NOISE] * size if kind == "noise" else distractors.first(size)
            # Insert from the back so earlier positions stay valid (ties keep needle order).
            positions = [int(f * (size + 1)) for f in fractions]
            for pos, needle in sorted(zip(positions, needles, strict=True), key=lambda p: -p[0]):
                lines.insert(pos, needle)
            context = "\n".join(lines)
        text = template.format(kind=value_kind, context=context, query=query)
        return Draft(text, prefix, list(answers), notes=notes)

    return Builder(build, min_size=0)


class _DistractorNeedles:
    """Needle-shaped haystack lines with random keys, drawn lazily so sizes share a prefix."""

    def __init__(self, rng: random.Random, config: NiahConfig) -> None:
        self._rng = rng
        self._config = config
        self._lines: list[str] = []

    def first(self, count: int) -> list[str]:
        while len(self._lines) < count:
            key = hs.random_needle(self._rng, self._config.key_type)
            value = hs.random_needle(self._rng, self._config.value_type)
            self._lines.append(NEEDLE.format(kind=self._config.value_type, key=key, value=value))
        return self._lines[:count]
