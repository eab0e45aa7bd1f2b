"""The paper's numbers the notebooks draw beside ours (``analysis/paper_numbers.yaml``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

PAPER_NUMBERS = Path(__file__).resolve().parents[2] / "analysis" / "paper_numbers.yaml"
RULER_COLUMNS = ["S1", "S2", "S3", "MK1", "MK2", "MK3", "MQ", "MV", "VT", "CWE", "FWE", "QS", "QH", "AVG"]


@functools.cache
def paper_numbers(path: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(Path(path or PAPER_NUMBERS).read_text())
