"""The pattern-similarity analysis runs and reports Jaccard similarities in [0, 1]."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pattern_similarity_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, "analysis/pattern_similarity.py", "--length", "512", "--steps", "8", "--gen-length", "8",
         "--block-size", "32", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "pattern_similarity.json").read_text())
    assert 0.0 <= summary["min_head_mean_jaccard"] <= summary["mean_jaccard_vs_build_step"] <= 1.0
    assert summary["build_step"] == 2 and (tmp_path / "pattern_similarity.png").stat().st_size > 10_000
