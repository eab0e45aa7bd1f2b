"""The paper's numbers the notebooks draw beside ours: ``experiments/paper_numbers.yaml``, the file the
tables work (``sparsed/tables.py``) reads too, so the notebooks and the tables never disagree."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAPER_NUMBERS = ROOT / "experiments" / "paper_numbers.yaml"
RULER_COLUMNS = ["S1", "S2", "S3", "MK1", "MK2", "MK3", "MQ", "MV", "VT", "CWE", "FWE", "QS", "QH", "AVG"]


def paper_numbers_path() -> Path:
    return PAPER_NUMBERS


@functools.cache
def paper_numbers(path: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or paper_numbers_path()).read_text())
