"""Answer extraction for multiple-choice generation (MMLU run generatively, 8 tokens, as in the paper).

A generated answer may be a bare letter ("D"), a labelled choice ("D. Paris", "(D)", "D)"), a sentence
("The answer is D", "Answer: (D)") or the text of a choice without its letter. ``extract_choice`` tries
these from the most to the least explicit and returns the letter, or None when nothing matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

LETTERS = "ABCD"


def _patterns(letters: str) -> list[re.Pattern[str]]:
    L = f"[{letters}]"  # the letter itself is case-sensitive: "a" in "is a dog" is no answer
    return [
        # "The answer is (D)", "answer: D", "Answer - D.", "the correct answer is option D"
        re.compile(rf"(?i:answer)\s*(?i:is|:|-)?\s*(?i:option\s*|choice\s*)?[:\-]?\s*\(?({L})\b\)?"),
        # a leading letter: "D", "D.", "D)", "(D)", "D:", "D. Paris", "**D**"
        re.compile(rf"^[\s*\[(]*({L})(?:[\s.):\]*]|$)"),
        # "(D)" anywhere
        re.compile(rf"\(({L})\)"),
        # "option D", "choice D"
        re.compile(rf"\b(?i:option|choice)\s+({L})\b"),
        # a standalone capital letter anywhere ("I think D is right")
        re.compile(rf"(?<![A-Za-z])({L})(?![A-Za-z])"),
    ]


_DEFAULT = _patterns(LETTERS)


def _norm(s: str) -> str:
    return re.sub(r"[\s.]+", " ", s).strip().lower()


def extract_choice(text: str, choices: Sequence[str] | None = None, letters: str = LETTERS) -> str | None:
    """The chosen letter in a generated answer (see module docstring), or None."""
    text = text.strip()
    if not text:
        return None
    for pattern in _DEFAULT if letters == LETTERS else _patterns(letters):
        m = pattern.search(text)
        if m:
            return m.group(1)
    if choices:  # the text of a choice without its letter
        t = _norm(text)
        for letter, choice in zip(letters, choices, strict=False):
            c = _norm(str(choice))
            if c and (t == c or t.startswith(c + " ")):
                return letter
    return None


def mmlu_target(doc: dict[str, Any]) -> str:
    return LETTERS[int(doc["answer"])]


def mmlu_process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
    pred = extract_choice(results[0], doc.get("choices"))
    return {"acc": float(pred == mmlu_target(doc))}
