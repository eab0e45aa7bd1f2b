"""Optional Weights & Biases tracking of a finished run (``run.wandb=true``)."""

from __future__ import annotations

from typing import Any

from sparsed.config_errors import ConfigError


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The scalar numbers of a result.json, with dotted keys (lists and texts left out)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:  # noqa: ANN401 - JSON values
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = float(value)

    for key in ("score", "latency", "attention", "memory", "nfe", "scores", "average"):
        if key in result:
            walk(key, result[key])
    return out


def log_to_wandb(result: dict[str, Any], project: str) -> None:
    """One wandb run per result: the resolved config as its config, the scalars as its summary.

    Offline machines keep the run locally (WANDB_MODE=offline, synced later with `wandb sync`).
    """
    try:
        import wandb
    except ImportError as exc:
        raise ConfigError("run.wandb=true needs the wandb package: pip install wandb") from exc
    run = wandb.init(project=project, config=result.get("config", {}), reinit=True)
    run.summary.update(flat_metrics(result))
    run.finish()
