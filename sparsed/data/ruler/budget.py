"""Token budgeting: render a prompt the way the model sees it and fit a haystack to a budget.

Every RULER task builds its prompt from a size parameter (noise sentences, essay words,
documents, ...). ``fit_size`` finds the largest size whose rendered prompt fits the token
budget with a handful of exact tokenisations: token counts grow almost linearly with the
size, so secant steps land within a unit or two of the answer and a short bracket search
finishes it. It serves the ``tight`` fill; RULER's own search-and-step sizing, the default,
is in ``sparsed.data.ruler.fill``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class LengthTooSmall(ValueError):
    """The requested length cannot hold even the smallest prompt of a task."""


@dataclass(frozen=True)
class RenderedPrompt:
    """The exact text given to the tokenizer and whether it still needs special tokens added."""

    text: str
    add_special_tokens: bool


def uses_chat_template(tokenizer: Any, chat_template: bool = True) -> bool:
    return bool(chat_template and getattr(tokenizer, "chat_template", None))


def render_prompt(
    tokenizer: Any, user_text: str, answer_prefix: str = "", chat_template: bool = True, preamble: str = ""
) -> RenderedPrompt:
    """Chat-wrap ``user_text`` (when asked and available) and append the answer prefix.

    The answer prefix goes after the assistant header, as in RULER, so the model continues it.
    A rendered chat template already contains its special tokens (BOS included where the
    template has one), so it is tokenised without adding more; a raw prompt gets them added.
    ``preamble`` is text that precedes the wrapped prompt as it is (already rendered): RULER's
    cwe puts its worked example there, wrapped in a chat turn of its own.
    """
    if uses_chat_template(tokenizer, chat_template):
        wrapped = tokenizer.apply_chat_template(
            [{"role": "user", "content": user_text}], add_generation_prompt=True, tokenize=False
        )
        return RenderedPrompt(preamble + wrapped + answer_prefix, add_special_tokens=False)
    return RenderedPrompt(preamble + user_text + answer_prefix, add_special_tokens=True)


def render_sample(tokenizer: Any, sample: Mapping[str, Any], chat_template: bool = True) -> RenderedPrompt:
    """The prompt of a generated sample (``input``, ``answer_prefix`` and, for cwe, ``preamble``)."""
    return render_prompt(
        tokenizer, sample["input"], sample.get("answer_prefix", ""), chat_template, sample.get("preamble", "")
    )


def sample_ids(tokenizer: Any, sample: Mapping[str, Any], chat_template: bool = True) -> list[int]:
    """The token ids the model is fed for a generated sample: exactly what the budget counted."""
    return encode_rendered(tokenizer, render_sample(tokenizer, sample, chat_template))


def encode_rendered(tokenizer: Any, rendered: RenderedPrompt) -> list[int]:
    return tokenizer.encode(rendered.text, add_special_tokens=rendered.add_special_tokens)


def count_tokens(tokenizer: Any, rendered: RenderedPrompt) -> int:
    return len(encode_rendered(tokenizer, rendered))


def prompt_ids(
    tokenizer: Any, user_text: str, answer_prefix: str = "", chat_template: bool = True, preamble: str = ""
) -> list[int]:
    """The token ids the model is fed for this prompt: exactly what the budget counted."""
    return encode_rendered(tokenizer, render_prompt(tokenizer, user_text, answer_prefix, chat_template, preamble))


def count_prompt_tokens(
    tokenizer: Any, user_text: str, answer_prefix: str = "", chat_template: bool = True, preamble: str = ""
) -> int:
    """Number of tokens the model is fed for this prompt (before generation)."""
    return count_tokens(tokenizer, render_prompt(tokenizer, user_text, answer_prefix, chat_template, preamble))


def fit_size(
    count: Callable[[int], int],
    budget: int,
    *,
    min_size: int,
    max_size: int,
    start: int | None = None,
    max_evals: int = 48,
) -> tuple[int, int]:
    """Largest ``size`` in ``[min_size, max_size]`` with ``count(size) <= budget``.

    Returns ``(size, count(size))``. ``count`` is expected to grow (almost) monotonically;
    where it does not, the result still fits the budget but may miss the maximum by a unit.
    ``start`` is a first guess (the previous sample's size is a very good one). Raises
    ``LengthTooSmall`` when even ``min_size`` is over the budget.
    """
    seen: dict[int, int] = {}

    def c(size: int) -> int:
        if size not in seen:
            seen[size] = count(size)
        return seen[size]

    lo, c_lo = min_size, c(min_size)
    if c_lo > budget:
        raise LengthTooSmall(f"the smallest prompt has {c_lo} tokens, over the budget of {budget}")
    hi: int | None = None  # smallest size known to be over the budget
    c_hi = 0
    guess = start if start is not None and start > lo else None
    bracket_steps = 0
    while len(seen) < max_evals and lo < max_size and (hi is None or hi - lo > 1):
        if guess is None:
            guess = _next_guess(lo, c_lo, hi, c_hi, budget, min_size, seen[min_size], bracket_steps)
        guess = min(max(guess, lo + 1), max_size if hi is None else hi - 1)
        value = c(guess)
        if value <= budget:
            lo, c_lo = guess, value
        else:
            hi, c_hi = guess, value
        if hi is not None:
            bracket_steps += 1
        guess = None
    return lo, c_lo


def _next_guess(lo: int, c_lo: int, hi: int | None, c_hi: int, budget: int, base: int, c_base: int, steps: int) -> int:
    if hi is None:
        # Not bracketed yet: extrapolate from the smallest prompt; overshoot slightly so the
        # next evaluation is likely to bracket the answer from above.
        rate = (c_lo - c_base) / (lo - base) if lo > base else 0.0
        if rate <= 0:
            return max(2 * lo, lo + 1)
        return lo + max(1, int((budget - c_lo) / rate) + 1)
    if steps > 6:
        return (lo + hi) // 2  # interpolation is stalling (step-like counts): bisect
    rate = (c_hi - c_lo) / (hi - lo)
    return lo + max(1, int((budget - c_lo) / rate) if rate > 0 else (hi - lo) // 2)
