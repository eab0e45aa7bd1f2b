"""Scoring MMLU answered by generation (8 tokens, as in the paper): lm-eval's rule and a lenient one.

``exact_match`` (the reported score) is lm-eval 0.4's generative MMLU (``mmlu_generative``, filter
``get_response``): the first line of the answer, stripped, must equal the gold letter once both are
lowercased and stripped of ASCII punctuation. So " d", "D." and "(D)" are right; "D. Paris", "The
answer is D", "Answer: D" and "Paris" are wrong; "D\nAnswer: B" is right (only the first line counts).
That last group is lm-eval's known weakness (lm-evaluation-harness issue #4187: a model that labels or
explains its answer scores 0), kept here on purpose so that the number compares with lm-eval's. One
difference remains in what reaches the rule: lm-eval stops generating at the first newline, this
task at a blank line or "Question:" (the first line is the same unless such a stop falls inside it).

``acc_lenient`` (reported beside it) is ``extract_choice``: a bare letter ("D"), a labelled choice
("D. Paris", "(D)", "D)"), a sentence ("The answer is D", "Answer: (D)") or the text of a choice
without its letter, tried from the most to the least explicit over the whole answer; it returns the
letter, or None when nothing matches. Its letter is case-sensitive, so " d" is no answer to it.
"""

from __future__ import annotations

import re
import string
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


_PUNCTUATION = str.maketrans("", "", string.punctuation)


def lm_eval_response(text: str) -> str:
    """What lm-eval's ``get_response`` filter keeps of an answer: its first line, stripped."""
    return text.split("\n", 1)[0].strip()


def lm_eval_exact_match(response: str, target: str) -> float:
    """lm-eval's ``exact_match`` with ``ignore_case`` and ``ignore_punctuation`` (lowercase first)."""
    return float(response.lower().translate(_PUNCTUATION) == target.lower().translate(_PUNCTUATION))


def mmlu_process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
    target = mmlu_target(doc)
    return {
        "exact_match": lm_eval_exact_match(lm_eval_response(results[0]), target),
        "acc_lenient": float(extract_choice(results[0], doc.get("choices")) == target),
    }
