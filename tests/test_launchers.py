"""Scale-out through Hydra's submitit launcher: the SLURM config renders the sbatch script it should, and
the same job shape runs for real through submitit's local executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sparsed.config import register_schemas

ROOT = Path(__file__).resolve().parents[1]
register_schemas()


def test_slurm_launcher_config_renders_one_gpu_job_per_run(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    monkeypatch.setenv("SPARSED_SLURM_PARTITION", "gpu-long")
    bin_dir = tmp_path / "bin"  # submitit's executor wants srun on PATH; nothing is submitted here
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", ["+experiment=table1_llada", "hydra/launcher=slurm", "hydra.launcher.timeout_min=600",
                                 f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["gpus_per_node"], launcher["tasks_per_node"], launcher["partition"]) == (1, 1, "gpu-long")
    # the launcher's own mapping of its settings onto submitit's executor (submitit_launcher.launch)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items()
              if k not in ("_target_", "submitit_folder", "max_num_timeout")}
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "submitit"))
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("#SBATCH --gpus-per-node=1", "#SBATCH --partition=gpu-long", "#SBATCH --time=600",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=96GB"):
        assert line in script, line


def test_a_sweep_through_submitits_local_executor(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "run.py", "-m", "hydra/launcher=slurm_local", "model=llada_small_random", "prompt=short",
           "gen.steps=4", "gen.gen_length=8", "gen.block_length=8", "run.warmup=false", "run.progress=false",
           "gen.seed=0,1", f"hydra.sweep.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 jobs in" in proc.stdout and "2 ran, 0 skipped" in proc.stdout
    results = [json.loads(p.read_text()) for p in tmp_path.rglob("result.json")]
    assert sorted(r["config"]["gen"]["seed"] for r in results) == [0, 1] and {r["status"] for r in results} == {"ok"}
    assert list((tmp_path / ".submitit").glob("*/*_log.out"))  # each run was a submitit job of its own
