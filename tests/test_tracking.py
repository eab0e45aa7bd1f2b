"""wandb tracking: the scalars of a result and a clear error when wandb is missing."""

from __future__ import annotations

import builtins

import pytest

from sparsed.config_errors import ConfigError
from sparsed.tracking import flat_metrics, log_to_wandb


def test_flat_metrics_keeps_scalars_only():
    result = {"score": 1.0, "latency": {"total_s": 2.5, "per_step_s": [1, 2]}, "attention": {"density_per_layer": {"0": 0.3}},
              "answer": "x", "nfe": 4}
    assert flat_metrics(result) == {"score": 1.0, "latency.total_s": 2.5, "attention.density_per_layer.0": 0.3, "nfe": 4.0}


def test_missing_wandb_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="run.wandb=true needs the wandb package"):
        log_to_wandb({"score": 1.0}, "p")
