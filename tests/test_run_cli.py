"""run.py as a user runs it: one run, a sweep with -m, and a bad value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAST = ["model=llada_small_random", "prompt=short", "gen.steps=4", "gen.gen_length=8", "gen.block_length=8",
        "run.warmup=false", "run.progress=false"]


def run_py(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_single_run_writes_result_json(tmp_path):
    proc = run_py(*FAST, "sparsed.block_size=16", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["attention"]["name"] == "sparsed"
    assert result["config"]["sparsed"]["block_size"] == 16
    assert len(result["latency"]["per_step_s"]) == 4 and result["nfe"] == 4
    assert set(result["attention"]["density_per_layer"]) == {"0", "1", "2", "3"}
    assert result["prompt"]["tokens"] > 0 and result["versions"]["torch"]
    assert "result" in proc.stdout and str(tmp_path) in proc.stdout


def test_sweep_with_multirun(tmp_path):
    proc = run_py("-m", *FAST, "attention=sliding_window", "sliding_window.ws=8,16", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = sorted(tmp_path.rglob("result.json"))  # job folders named by their config
    assert len(results) == 2
    windows = {json.loads(p.read_text())["config"]["sliding_window"]["ws"] for p in results}
    assert windows == {8, 16}


def test_bad_value_is_one_clear_line():
    proc = run_py(*FAST, "sparsed.select=2")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: sparsed.select=2.0 is outside (0, 1]"


def test_a_cached_run_records_its_forwards(tmp_path):
    proc = run_py(*FAST, "attention=dense", "cache=prefix", "gen.threshold=0.5", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["cache"]["name"] == "prefix" and r["config"]["gen"]["threshold"] == 0.5
    assert r["steps"]["full_forwards"] == 1 and r["steps"]["full_forwards"] + r["steps"]["cached_forwards"] == r["nfe"]
    assert r["steps"]["rows_per_step"][0] > r["steps"]["rows_per_step"][-1]
    assert r["latency"]["generated_tokens_per_s"] > 0 and r["memory"]["kv_cache_gib"] > 0
    assert len(r["answer_token_ids"]) == 8


def test_a_method_that_cannot_serve_a_cache_is_one_line():
    proc = run_py(*FAST, "cache=dual")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: attention=sparsed does not run on a KV cache")
