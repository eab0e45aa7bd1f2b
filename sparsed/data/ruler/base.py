"""Shared types of the RULER task builders.

A task is prepared once per ``generate`` call (data loaded, few-shot examples built) and then
yields one ``Builder`` per sample index. A builder holds all of that sample's random draws and
renders the prompt for any haystack ``size``; the budget search only varies the size, so the
needles, their depths and the answers of a sample do not depend on how the search went.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Far above any sensible haystack; keeps the budget search bounded.
MAX_SIZE = 10_000_000


@dataclass(frozen=True)
class Draft:
    """One rendered sample before token counting."""

    input: str
    answer_prefix: str
    outputs: list[str]
    preamble: str = ""  # rendered text before the (chat-wrapped) input; see budget.render_prompt
    notes: tuple[str, ...] = ()  # where this sample departs from RULER's for lack of data


@dataclass(frozen=True)
class Builder:
    build: Callable[[int], Draft]
    min_size: int
    max_size: int = MAX_SIZE
    # The prompt RULER measures tokens per unit on, where it is not the sample itself (vt leaves
    # out its worked example there); None = ``build``.
    estimate: Callable[[int], Draft] | None = None


@dataclass(frozen=True)
class TaskContext:
    """Everything a task may use while preparing its samples."""

    task: str
    length: int
    gen_length: int
    seed: int
    tokenizer: Any
    chat_template: bool
    haystack: str | None = None
    essay_path: str | None = None
    qa_path: str | None = None
    fill: str = "official"  # see sparsed.data.ruler.fill
    cwe_words_path: str | None = None  # RULER's second cwe word list (english_words.json)

    def rng(self, index: int, stream: str) -> random.Random:
        return sample_rng(self.task, self.seed, index, stream)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    family: str
    gen_length: int
    metric: str
    prepare: Callable[[TaskContext], Callable[[int], Builder]]
    haystack: str | None = None  # default haystack kind, where the task has one


def sample_rng(task: str, seed: int, index: int, stream: str) -> random.Random:
    """An independent generator per (task, seed, sample, purpose).

    String seeds are hashed with SHA-512 by ``random``, so this is stable across runs and
    platforms, and a sample never depends on how many samples were drawn before it.
    """
    return random.Random(f"sparsed.ruler/{task}/{seed}/{index}/{stream}")
