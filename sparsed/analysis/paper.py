"""The paper's numbers the notebooks draw beside ours.

One file of them serves the tables work and the notebooks: ``experiments/paper_numbers.yaml`` where the
checkout has it, else ``analysis/paper_numbers.yaml`` (the same keys and numbers, kept until the two branches
meet; then the analysis copy can go).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = (ROOT / "experiments" / "paper_numbers.yaml", ROOT / "analysis" / "paper_numbers.yaml")
RULER_COLUMNS = ["S1", "S2", "S3", "MK1", "MK2", "MK3", "MQ", "MV", "VT", "CWE", "FWE", "QS", "QH", "AVG"]


def paper_numbers_path() -> Path:
    return next(p for p in CANDIDATES if p.is_file())


@functools.cache
def paper_numbers(path: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or paper_numbers_path()).read_text())
