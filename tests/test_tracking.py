"""wandb tracking: the scalars of a result, offline without an API key, and never a failed job."""

from __future__ import annotations

import builtins

from omegaconf import OmegaConf

from sparsed.tracking import flat_metrics, track, wandb_mode


def test_flat_metrics_keeps_scalars_only():
    result = {"score": 1.0, "latency": {"total_s": 2.5, "per_step_s": [1, 2]}, "attention": {"density_per_layer": {"0": 0.3}},
              "answer": "x", "nfe": 4}
    assert flat_metrics(result) == {"score": 1.0, "latency.total_s": 2.5, "attention.density_per_layer.0": 0.3, "nfe": 4.0}


def test_offline_without_an_api_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode() == "disabled"


def test_an_offline_run_lands_in_the_run_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = OmegaConf.create({"run": {"wandb_project": "sparsed-test"}})
    result = {"config": {"model": {"name": "tiny"}}, "score": 0.5, "latency": {"total_s": 1.0, "per_step_s": [0.4, 0.6]}}
    track(result, cfg, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # the run's data, for `wandb sync` later


def test_missing_wandb_is_a_warning_not_a_failure(monkeypatch, tmp_path, caplog):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    track({"score": 1.0}, OmegaConf.create({"run": {"wandb_project": "p"}}), tmp_path)
    assert "wandb is not installed" in caplog.text
