"""RULER scoring, as in NVIDIA RULER's ``scripts/eval``.

* ``postprocess_pred``: strip, turn control characters (U+0000-U+001F, which includes
  newlines and tabs) into newlines, strip again. RULER does nothing else: no cut at the first
  blank line, no answer-prefix removal, no lowercasing (matching is case-insensitive anyway).
* ``string_match_all`` (niah, vt, cwe, fwe): per sample, the fraction of gold strings found
  case-insensitively as substrings of the prediction; mean over samples, x100.
* ``string_match_part`` (qa): per sample, 1 if any gold string is found; mean, x100.

Both round to 2 decimals as RULER does. A task's score in RULER's tables is this number; the
RULER average is the unweighted mean over tasks (``ruler_average``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

_CONTROL = re.compile(r"[\x00-\x1f]")


def postprocess_pred(prediction: str) -> str:
    return _CONTROL.sub("\n", prediction.strip()).strip()


def _check(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if not preds:
        raise ValueError("no predictions to score")
    if any(len(r) == 0 for r in refs):
        raise ValueError("every sample needs at least one reference string")


def string_match_all(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    _check(preds, refs)
    total = 0.0
    for pred, ref in zip(preds, refs, strict=True):
        low = pred.lower()
        total += sum(r.lower() in low for r in ref) / len(ref)
    return round(total / len(preds) * 100, 2)


def string_match_part(preds: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    _check(preds, refs)
    total = 0.0
    for pred, ref in zip(preds, refs, strict=True):
        low = pred.lower()
        total += max(float(r.lower() in low) for r in ref)
    return round(total / len(preds) * 100, 2)


METRICS: dict[str, Callable[[Sequence[str], Sequence[Sequence[str]]], float]] = {
    "string_match_all": string_match_all,
    "string_match_part": string_match_part,
}

# The metric of each RULER task (also carried by every generated sample as "metric").
TASK_METRICS = {
    **{
        t: "string_match_all"
        for t in (
            "niah_single_1", "niah_single_2", "niah_single_3",
            "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
            "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe",
        )
    },
    "qa_1": "string_match_part",
    "qa_2": "string_match_part",
}  # fmt: skip
RULER_TASKS = tuple(TASK_METRICS)


def score(metric: str, predictions: Sequence[str], references: Sequence[Sequence[str]], postprocess: bool = True) -> float:
    """Score raw model outputs with ``metric`` (after RULER's post-processing by default)."""
    preds = [postprocess_pred(p) for p in predictions] if postprocess else list(predictions)
    return METRICS[metric](preds, references)


def ruler_average(per_task: Mapping[str, float | None], tasks: Iterable[str] | None = None) -> dict[str, object]:
    """Unweighted mean over the tasks that ran.

    A task "did not run" when its score is None or NaN, or when ``tasks`` (the tasks that
    were meant to run, e.g. ``RULER_TASKS``) names it and ``per_task`` lacks it. Returns
    ``{"average": float | None, "tasks_run": [...], "tasks_not_run": [...], "complete": bool}``;
    a partial average must be reported together with its ``tasks_not_run``.
    """
    names = list(dict.fromkeys([*(tasks or []), *per_task]))
    ran: list[str] = []
    not_run: list[str] = []
    for name in names:
        value = per_task.get(name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            not_run.append(name)
        else:
            ran.append(name)
    average = round(sum(float(per_task[t]) for t in ran) / len(ran), 2) if ran else None  # type: ignore[arg-type]
    return {"average": average, "tasks_run": ran, "tasks_not_run": not_run, "complete": not not_run and bool(ran)}
