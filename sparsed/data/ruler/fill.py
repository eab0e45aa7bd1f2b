"""How big a sample's haystack is: RULER's official search-and-step fill, or the tight fill.

``official`` (the default) sizes samples the way NVIDIA RULER's generators do, so that a
"RULER-4k" number here measures the task of the paper:

1. One size for the whole task, searched on throw-away samples. Most tasks bisect between one
   step and a bound of 3x (cwe 2x) the size that the tokens per unit of a small prompt suggest;
   each probe is a fresh random sample (qa: always the first question). fwe instead grows a size
   from budget/6 words in steps of budget/32 while the prompt stays under the budget, then goes
   back one step.
2. Every sample starts at that size and, while it is over the budget, loses one whole step:
   500 essay words, 25 noise lines or needles (5 below 4096 tokens), 10 vt noise lines (5 below
   4096), 10 cwe words, budget/32 fwe words, 10 qa documents.

A sample whose random draws take a few more tokens than the search's therefore loses a whole
step, and samples often end hundreds of tokens short of the nominal length. Where this departs
from RULER: RULER redraws a sample after stepping it down (except fwe), here the sample keeps
its draws (needles, depths, answers) and only its haystack shrinks; and where RULER would loop
forever (a sample over the budget at one step: essay tasks near 1k tokens), the sample gets the
largest size below one step instead and a note saying so (``BELOW_ONE_STEP``).

``tight`` fits every sample to the largest size within the budget (``budget.fit_size``): samples
end within a few tokens of the budget, a longer and probably harder task than RULER's at the
same nominal length. ``context_stats`` summarises the lengths a fill produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sparsed.data.ruler.base import Builder, Draft
from sparsed.data.ruler.budget import LengthTooSmall

FILLS = ("official", "tight")
BELOW_ONE_STEP = (
    "even one whole step ({step} units) is over the budget, where RULER's generator would loop forever: "
    "sized to the largest size that fits instead"
)
Tokens = Callable[[Draft], int]


@dataclass(frozen=True)
class StepRule:
    """RULER's sizing constants for one task at one length."""

    step: int  # units dropped per retry (and the bisection's lower bound)
    search: str = "bisect"  # "bisect" or "grow" (fwe)
    probe_size: int | None = None  # bisect: size of the tokens-per-unit probe; None = step
    bound_factor: float = 3.0  # bisect: upper bound = factor x budget-filling size estimate
    floor_bound: bool = False  # cwe computes its bound as floor(length / rate) * factor
    fresh_probes: bool = True  # False: every probe is the same sample (qa asks question 0)
    start: int = 0  # grow: the first size


def check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise ValueError(f"unknown RULER fill {fill!r}; choose one of: {', '.join(FILLS)}")
    return fill


def official_rule(family: str, haystack: str | None, length: int, budget: int) -> StepRule:
    """RULER's step and search for a task family (``length`` = prompt + generation tokens)."""
    short = length < 4096  # RULER's generators switch to 5-unit steps below 4096 (not for essays)
    if family == "niah":
        return StepRule(500 if haystack == "essay" else 5 if short else 25)
    if family == "vt":
        return StepRule(500 if haystack == "essay" else 5 if short else 10)
    if family == "cwe":
        return StepRule(10, probe_size=4096, bound_factor=2.0, floor_bound=True)
    if family == "fwe":
        return StepRule(max(1, budget // 32), search="grow", start=budget // 6)
    if family == "qa":
        return StepRule(10, fresh_probes=False)
    raise ValueError(f"no official fill rule for task family {family!r}")


def vt_example_rule(haystack: str) -> StepRule:
    """vt's worked example is sized like a sample of a 500-token task, with finer steps."""
    return StepRule(50 if haystack == "essay" else 5)


def official_base(rule: StepRule, probe: Callable[[int], Builder], tokens: Tokens, budget: int, length: int) -> int:
    """The task-wide starting size, searched on probe samples ``probe(0)``, ``probe(1)``, ..."""
    first = probe(0)
    if rule.search == "grow":
        size = max(rule.start, first.min_size)
        while size < first.max_size and tokens(first.build(size)) < budget:
            size += rule.step
        return max(size - rule.step, first.min_size)
    unit = rule.probe_size or rule.step
    rate = tokens((first.estimate or first.build)(unit)) / unit
    if rule.floor_bound:
        bound = int(length // rate) * int(rule.bound_factor)
    else:
        bound = int(length / rate * rule.bound_factor)
    lo = max(rule.step, first.min_size)
    hi = min(max(bound, 2 * rule.step), first.max_size)
    best: int | None = None
    k = 1
    while lo <= hi:
        mid = (lo + hi) // 2
        builder = probe(k if rule.fresh_probes else 0)
        if tokens(builder.build(mid)) <= budget:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
        k += 1
    return best if best is not None else max(rule.step, first.min_size)


def step_down(builder: Builder, tokens: Callable[[int], int], base: int, step: int, budget: int) -> tuple[int, int]:
    """Start at ``base`` and drop ``step`` units until the prompt fits: ``(size, tokens)``."""
    size = max(base, builder.min_size)
    while (n := tokens(size)) > budget:
        if size <= max(step, builder.min_size):
            raise LengthTooSmall(f"{n} tokens at size {size}, over the budget of {budget}, and no whole step left")
        size = max(size - step, builder.min_size)
    return size, n


def context_stats(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prompt lengths of generated samples: what a RULER result records beside its score."""
    if not samples:
        return {"fill": None, "mean": None, "min": None, "max": None, "budget": None}
    lengths = [int(s["length"]) for s in samples]
    first = samples[0]
    return {
        "fill": first.get("fill"),
        "mean": round(sum(lengths) / len(lengths), 1),
        "min": min(lengths),
        "max": max(lengths),
        "budget": int(first["max_length"]) - int(first["gen_length"]),
    }
