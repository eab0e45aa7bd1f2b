"""Prompts for the runner's ``prompt/`` config group: ``short`` and long needle-in-a-haystack.

``short`` is a one-line arithmetic word problem (numbers drawn from ``seed``). The long kinds
(``1k`` ... ``128k``, or any ``length``) are single-needle retrieval questions in the
niah_single_2 style, built by the RULER generator and budgeted so that the chat-wrapped
prompt plus ``gen_length`` generated tokens fit ``length`` tokens of the given tokenizer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from sparsed.data.ruler import count_prompt_tokens, generate
from sparsed.data.ruler.haystack import essays_available

KINDS = ("short", "1k", "2k", "4k", "8k", "16k", "32k", "64k", "128k")
DEFAULT_GEN_LENGTH = 128  # RULER's niah generation length


@dataclass(frozen=True)
class Prompt:
    name: str
    messages: list[dict[str, str]]  # chat messages: one user turn
    text: str  # the user message
    answer_prefix: str  # appended after the assistant header, continued by the model
    answers: list[str] = field(default_factory=list)  # gold strings (substring match)
    n_tokens: int = 0  # tokens of the rendered prompt (chat template + answer prefix)


def kind_length(kind: str) -> int | None:
    """Token length named by a kind: "4k" -> 4096, "short" -> None."""
    if kind == "short":
        return None
    match = re.fullmatch(r"(\d+)k", kind)
    if not match:
        raise ValueError(f"unknown prompt kind {kind!r}; use 'short' or '<n>k' such as {KINDS[1:]}")
    return int(match.group(1)) * 1024


def _short(seed: int) -> tuple[str, list[str]]:
    rng = random.Random(f"sparsed.prompts/short/{seed}")
    name = rng.choice(["Lily", "Omar", "Priya", "Tomas", "Mei"])
    boxes, per_box = rng.randint(3, 9), rng.randint(4, 12)
    given = rng.randint(1, boxes * per_box - 1)
    question = (
        f"{name} has {boxes} boxes with {per_box} apples in each box. "
        f"{name} gives {given} apples to friends. How many apples are left? "
        "Think step by step, then give the final number."
    )
    return question, [str(boxes * per_box - given)]


def make_prompt(
    kind: str,
    tokenizer: Any,
    length: int | None = None,
    seed: int = 0,
    gen_length: int = DEFAULT_GEN_LENGTH,
    *,
    haystack: str = "auto",
    essay_path: str | None = None,
    chat_template: bool = True,
    cache_dir: str | None = None,
) -> Prompt:
    """Build the prompt of ``kind``: "short", "<n>k", or "niah" (which needs ``length``).

    ``length`` overrides the nominal length of a long kind. ``haystack``: "essay" (Paul
    Graham essays, like niah_single_2), "noise" (RULER's repeated sentences, like
    niah_single_1), or "auto" (essays when installed, else noise); the choice is part of
    ``Prompt.name``.
    """
    if kind == "short":
        text, answers = _short(seed)
        n_tokens = count_prompt_tokens(tokenizer, text, "", chat_template)
        return Prompt(f"short-s{seed}", [{"role": "user", "content": text}], text, "", answers, n_tokens)
    if length is None:
        parsed = None if kind == "niah" else kind_length(kind)
        if parsed is None:
            raise ValueError("kind 'niah' needs an explicit length")
        length = parsed
    if haystack == "auto":
        haystack = "essay" if essays_available(essay_path) else "noise"
    if haystack not in ("essay", "noise"):
        raise ValueError(f"haystack must be 'essay', 'noise' or 'auto', not {haystack!r}")
    sample = generate(
        "niah_single_2",
        length,
        tokenizer,
        1,
        seed,
        gen_length=gen_length,
        chat_template=chat_template,
        haystack=haystack,
        essay_path=essay_path,
        cache_dir=cache_dir,
        fill="tight",  # a prompt of the nominal length (latency, demos), not RULER's shorter samples
    )[0]
    return Prompt(
        name=f"niah-{length}-{haystack}-s{seed}",
        messages=[{"role": "user", "content": sample["input"]}],
        text=sample["input"],
        answer_prefix=sample["answer_prefix"],
        answers=list(sample["outputs"]),
        n_tokens=sample["length"],
    )
