"""Checkpoint loading: sharded safetensors, dtypes, architecture checks, offline hub ids, saving."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sparsed.config_errors import ConfigError
from sparsed.models.loading import load_model, save_llada_checkpoint
from tests.conftest import fixture_dir


def test_sharded_index_loads_the_same_model(tmp_path):
    src = fixture_dir("llada-tiny")
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / shard))
        weight_map |= {k: shard for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    shutil.copy(src / "config.json", tmp_path / "config.json")
    a = load_model(str(src), device="cpu", dtype="fp32")
    b = load_model(str(tmp_path), device="cpu", dtype="fp32")
    ids = torch.randint(0, 510, (1, 20))
    assert torch.equal(a(ids), b(ids))


def test_bf16_load():
    model = load_model(str(fixture_dir("dream-tiny")), device="cpu", dtype="bf16")
    assert model.dtype == torch.bfloat16
    assert model(torch.randint(0, 510, (1, 8))).dtype == torch.bfloat16


def test_architecture_mismatch_is_named():
    with pytest.raises(ConfigError, match="model.arch=dream but the checkpoint .* is a llada model"):
        load_model(str(fixture_dir("llada-tiny")), device="cpu", expect_arch="dream")


def test_missing_path_and_offline_hub_id(monkeypatch):
    with pytest.raises(ConfigError, match="no such checkpoint folder"):
        load_model("./does/not/exist")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="model.path=GSAI-ML/LLaDA-1.5: could not fetch .* model.path=/path/to/checkpoint"):
        load_model("GSAI-ML/LLaDA-1.5")


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="model_type='gpt2' is not a supported architecture"):
        load_model(str(tmp_path))


def test_save_and_reload_llada_layout(tmp_path, llada_tiny):
    model, exp = llada_tiny
    save_llada_checkpoint(model, tmp_path)
    names = set(load_file(str(tmp_path / "model.safetensors")))
    assert "model.transformer.blocks.0.q_proj.weight" in names and "model.transformer.ff_out.weight" in names
    again = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert torch.equal(again(exp["input_ids"]), exp["logits"])
