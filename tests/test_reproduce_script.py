"""scripts/reproduce_small_dlm.sh runs its three stages, stitches their logs and evaluates (tiny, on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reproduce_script_chains_three_stages(tmp_path: Path) -> None:
    env = os.environ | {
        "TRAIN_EXTRA": "--device cpu --tiny --steps 3", "COMPILE": "", "WORKERS": "0",
        "EVAL_ARGS": "--lengths 512 --limit 1 --batch 1 --tasks niah_single_1 --methods dense",
        "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable,  # the test's interpreter, not PATH's
    }
    run = tmp_path / "run"
    subprocess.run(["bash", "scripts/reproduce_small_dlm.sh", str(run)], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=900)
    for stage in (2, 3):  # each stage starts from the previous one's exported weights
        cfg = json.loads((run / f"stage{stage}" / "train_config.json").read_text())
        assert cfg["init_from"] == str(run / f"stage{stage - 1}" / "model")
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1, 2, 3] and [r["step"] for r in rows] == [3, 6, 9]
    result = json.loads((run / "ruler.json").read_text())
    assert "niah_single_1" in result["scores"]["512"]["dense"]
