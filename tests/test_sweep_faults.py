"""Sweeps that lose nothing: SIGKILL at several points and a failing job, on the tiny random model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=llada_small_random", "prompt=short", "gen.steps=4", "gen.gen_length=8", "gen.block_length=8",
        "run.warmup=false", "run.progress=false", "model.architecture.n_layers=1", "model.architecture.d_model=64",
        "model.architecture.n_heads=2", "model.architecture.n_kv_heads=2", "model.architecture.mlp_hidden_size=128"]


def launch(sweep_dir: Path, tmp: Path, seeds: str, *extra: str, pause: str = "", fail_seed: int | None = None,
           ) -> subprocess.CompletedProcess | None:
    """One launch of the sweep; with ``pause``, killed with SIGKILL once the pause is reached (returns None)."""
    marker = tmp / "marker"
    marker.unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore", FAULT_PAUSE=pause, FAULT_MARKER=str(marker),
               FAULT_LOG=str(tmp / "written.log"))
    if fail_seed is not None:
        env["FAULT_FAIL_SEED"] = str(fail_seed)
    cmd = [sys.executable, str(ROOT / "tests" / "fault_run.py"), "-m", *TINY, f"gen.seed={seeds}", *extra,
           f"hydra.sweep.dir={sweep_dir}"]
    if not pause:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None, f"the sweep ended before {pause}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"{pause} never reached"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    return None


def skipped(proc: subprocess.CompletedProcess) -> int:
    return sum(line.startswith("skipped ") for line in proc.stdout.splitlines())


def results(sweep_dir: Path) -> dict[tuple[int, str], dict]:
    out = {}
    for path in sweep_dir.rglob("result.json"):
        data = json.loads(path.read_text())  # a corrupt file fails here
        key = (data["config"]["gen"]["seed"], data["config"]["attention"]["name"])
        assert key not in out, f"two result.json for {key}"
        out[key] = data
    return out


def test_sweep_survives_sigkill_at_every_point(tmp_path):
    sweep = tmp_path / "sweep"
    args = (sweep, tmp_path, "0,1,2,3", "attention=dense,sliding_window")
    # jobs run in the order (0, dense), (0, sliding_window), (1, dense), ...
    launch(*args, pause="during:1")  # killed inside job 2's generation
    assert len(results(sweep)) == 2
    launch(*args, pause="writing:2")  # killed with job 4's result half written
    assert len(results(sweep)) == 4
    assert list(sweep.rglob(".result.json.*.tmp")), "the half-written file should be left behind, unnamed"
    launch(*args, pause="between:3")  # killed after job 6 wrote its result, before job 7
    assert len(results(sweep)) == 7
    done = launch(*args)
    assert done is not None and done.returncode == 0, done.stderr[-2000:]
    assert skipped(done) == 7
    assert "8 jobs in" in done.stdout and "1 ran, 7 skipped (complete before), 0 failed" in done.stdout

    found = results(sweep)
    assert set(found) == {(s, a) for s in range(4) for a in ("dense", "sliding_window")}  # none lost
    assert all(r["status"] == "ok" and len(r["answer_token_ids"]) == 8 for r in found.values())
    written = (tmp_path / "written.log").read_text().split("\n")[:-1]
    assert len(written) == 8 and len(set(written)) == 8  # every result written once: none repeated
    assert all(line.endswith(" result.json") for line in written)  # none written beside another
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert (summary["jobs"], summary["ok"], summary["skipped"], summary["failed"]) == (8, 1, 7, 0)
    again = launch(*args)  # a finished sweep relaunched runs nothing
    assert again.returncode == 0 and skipped(again) == 8


def test_a_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    first = launch(sweep, tmp_path, "0,1,2", "attention=dense", fail_seed=1)
    assert first.returncode == 1
    assert "3 jobs in" in first.stdout and "2 ran, 0 skipped (complete before), 1 failed" in first.stdout
    assert "simulated crash inside the attention method (seed 1)" in first.stdout
    found = results(sweep)
    assert {k[0]: r["status"] for k, r in found.items()} == {0: "ok", 1: "failed", 2: "ok"}  # job 3 ran after it
    failed = found[(1, "dense")]
    assert failed["error"]["type"] == "RuntimeError" and "Traceback" in failed["error"]["traceback"]

    fixed = launch(sweep, tmp_path, "0,1,2", "attention=dense")  # relaunched: only the failed job runs
    assert fixed.returncode == 0 and "1 ran, 2 skipped" in fixed.stdout
    assert {r["status"] for r in results(sweep).values()} == {"ok"}
    kept = list(sweep.rglob("result.failed-1.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "failed"  # the record is kept
