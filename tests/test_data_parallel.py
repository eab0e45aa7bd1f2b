"""Data-parallel evaluation with torch.distributed: two CPU processes (gloo) give exactly what one gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=llada_small_random", "run.warmup=false", "run.progress=false", "attention=dense"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(out: Path, overrides: list[str], ranks: int = 1) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}", "--master-addr=127.0.0.1",
                f"--master-port={free_port()}"] if ranks > 1 else [sys.executable]
    proc = subprocess.run([*launcher, "run.py", *TINY, *overrides, f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


def test_ruler_on_two_processes_equals_one(tmp_path):
    over = ["task=ruler", "prompt.length=1024", "task.tasks=[niah_single_1,vt]", "task.limit=3", "task.gen_length=8",
            "task.steps=4", f"task.data_cache_dir={tmp_path / 'samples'}"]
    one = run(tmp_path / "one", over)
    two = run(tmp_path / "two", over, ranks=2)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["scores"] == one["scores"] and two["timing"]["sequences"] == one["timing"]["sequences"] == 6
    for task in ("niah_single_1", "vt"):
        a = (tmp_path / "one" / "predictions" / f"{task}.jsonl").read_text().splitlines()
        b = (tmp_path / "two" / "predictions" / f"{task}.jsonl").read_text().splitlines()
        assert a == b and all(len(json.loads(line)["token_ids"]) == 8 for line in a)  # same samples, same tokens


def test_mmlu_through_lm_eval_on_two_processes_equals_one(tmp_path):
    for split, n in (("dev", 5), ("test", 3)):
        (tmp_path / "mmlu" / split).mkdir(parents=True)
        for subject in ("anatomy", "virology"):
            rows = [f'"{subject} question {i}?",w,x,y,z,{"ABCD"[i % 4]}' for i in range(n)]
            (tmp_path / "mmlu" / split / f"{subject}_{split}.csv").write_text("\n".join(rows) + "\n")
    over = ["task=mmlu", f"task.data_dir={tmp_path / 'mmlu'}", "task.steps=4"]
    one = run(tmp_path / "one", over)
    two = run(tmp_path / "two", over, ranks=2)
    assert two["scores"] == one["scores"] and two["details"]["mmlu"]["n"] == one["details"]["mmlu"]["n"] == 6
    assert two["details"]["mmlu"]["per_subject"] == one["details"]["mmlu"]["per_subject"]
    a = [json.loads(line) for line in (tmp_path / "one" / "samples_mmlu.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "two" / "samples_mmlu.jsonl").read_text().splitlines()]
    key = lambda r: (r["task"], r["doc_id"])  # noqa: E731
    assert [(key(r), r["resps"], r["resp_token_ids"]) for r in sorted(a, key=key)] == \
           [(key(r), r["resps"], r["resp_token_ids"]) for r in sorted(b, key=key)]
    assert all(len(r["resp_token_ids"][0]) == 8 for r in a)
