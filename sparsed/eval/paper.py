"""The paper's per-benchmark method settings, read from ``configs/paper/*.yaml``, to flag runs that differ.

Benchmarks choose their attention on the command line (``attention=sliding_window paper=short``,
``sparsed.select=0.5``...), so a run can silently use another setting; ``paper_deviations`` lists every
difference from the preset that belongs to the benchmark as a warning in result.json (informational:
ablations differ on purpose). The presets live in one place, the YAML files; nothing here repeats them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

PAPER_DIR = Path(__file__).resolve().parents[2] / "configs" / "paper"
SHORT = ("gsm8k", "mmlu", "humaneval")


@functools.cache
def preset(name: str) -> dict[str, dict[str, Any]]:
    """method node -> setting -> value of ``configs/paper/<name>.yaml``."""
    data = yaml.safe_load((PAPER_DIR / f"{name}.yaml").read_text()) or {}
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}


def preset_for(task: str, prompt_length: int | None) -> str:
    if task in SHORT:
        return "short"
    return "8k" if (prompt_length or 0) > 4096 else "4k"


def expected(task: str, prompt_length: int | None) -> dict[str, dict[str, Any]]:
    """method -> setting -> the paper's value for this benchmark."""
    return preset(preset_for(task, prompt_length))


def paper_deviations(task: str, prompt_length: int | None, choice: Any) -> list[str]:  # noqa: ANN401 - a Choice
    want = expected(task, prompt_length).get(choice.name, {})
    out = []
    for key, value in want.items():
        have = getattr(choice.settings, key, None)
        if have is not None and have != value:
            out.append(f"{choice.name}.{key}={have} differs from the paper's {value} for {task} "
                       f"(paper={preset_for(task, prompt_length)} sets it)")
    return out
