"""Every paper preset (configs/experiment) composes and passes every check, job by job, without running."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sparsed.config import register_schemas
from sparsed.launch.checks import check_settings

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml"))
register_schemas()


def sweep_jobs(name: str) -> list[list[str]]:
    """The override list of every job of ``python run.py +experiment=<name> -m`` (its sweeper params)."""
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("config", [f"+experiment={name}"], return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        grid = [[f"{k}={v}" for v in str(values).split(",")] for k, values in params.items()]
        return [[f"+experiment={name}", *combo] for combo in itertools.product(*grid)]


def compose_job(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return compose("config", overrides)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_job_of_every_preset_validates(name):
    jobs = sweep_jobs(name)
    assert len(jobs) >= 1  # a preset is a sweep, at least one job (most are 10-30)
    seen = set()
    for overrides in jobs:
        cfg = compose_job(overrides)
        check_settings(cfg)
        seen.add(json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True))
    assert len(seen) == len(jobs)  # no two jobs of a preset run the same config


def test_presets_carry_the_papers_settings():
    cell = compose_job(["+experiment=table1_llada", "benchmark=mmlu", "row=fast_dllm"])
    assert (cell.attention.name, cell.cache.name, cell.gen.threshold, cell.task.block_length) == ("dense", "prefix", 0.9, 8)
    ruler = compose_job(["+experiment=table1_llada", "benchmark=ruler_8k", "row=fast_dllm"])
    assert ruler.task.block_length == 32 and ruler.prompt.length == 8192  # Fast-dLLM's block 32 outside MMLU
    dense = compose_job(["+experiment=table1_llada", "benchmark=ruler_8k", "row=dense"])
    assert dense.task.block_length is None and dense.sliding_window.ws == 4096  # Table 3: one block
    dkv = compose_job(["+experiment=table1_llada", "benchmark=gsm8k", "row=dkv_greedy"])
    assert (dkv.cache.name, dkv.dkv_greedy.refresh_interval, dkv.dkv_greedy.window) == ("dkv_greedy", 2, 4)
    pd = compose_job(["+experiment=table1_dream", "benchmark=ruler_4k", "row=dkv_pd"])
    assert (pd.cache.name, pd.dkv_pd.refresh_interval, pd.task.batch_size, pd.model.arch) == ("dkv_pd", 4, 16, "dream")
    short = compose_job(["+experiment=table1_dream", "benchmark=humaneval", "row=sparsed"])
    assert (short.sparsed.block_size, short.sparsed.select, short.sparsed.skip) == (32, 0.5, 0.2)
    long = compose_job(["+experiment=fig4", "benchmark=latency_64k", "row=streaming_llm"])
    assert (long.streaming_llm.ws, long.task.name, long.gen.steps, long.prompt.length) == (32768, "latency", 128, 65536)
    ablation = compose_job(["+experiment=table2", "benchmark=ruler_4k", "row=no_skip_paper"])
    assert (ablation.sparsed.skip, ablation.sparsed.compat) == (0.0, "paper")


def test_checkpoints_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARSED_DREAM_PATH", "/ckpt/dream")
    cfg = compose_job(["+experiment=fig4", "checkpoint=dream"])
    assert cfg.model.path == "/ckpt/dream" and cfg.model.arch == "dream"
    assert compose_job(["+experiment=fig4", "checkpoint=dream", "model.path=/x"]).model.path == "/x"
