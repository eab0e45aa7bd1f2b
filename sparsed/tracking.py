"""Weights & Biases tracking of a finished run (on by default; ``run.wandb=false`` turns it off).

Without an API key (``WANDB_API_KEY`` or ``wandb login``) the run is kept offline in its run folder
(``<run dir>/wandb/``; ``wandb sync <that folder>`` uploads it later); ``WANDB_MODE`` overrides either.
Tracking never fails a job: the result is on disk before it starts, and an error here is a warning.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger("sparsed")


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


def wandb_mode() -> str:
    """``WANDB_MODE`` when set, online with an API key, else offline."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):
            return "online"
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        pass
    return "offline"


def _latency_figure(per_step: list[float]) -> Any:  # noqa: ANN401 - a matplotlib figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(range(len(per_step)), per_step, marker=".")
    ax.set_xlabel("denoising step")
    ax.set_ylabel("seconds")
    ax.set_title("latency per step")
    fig.tight_layout()
    return fig


def track(result: dict[str, Any], cfg: DictConfig, out_dir: str | Path) -> None:
    """One wandb run per result: config, scalar metrics, per-step latency, a latency figure, per-task scores."""
    try:
        import wandb
    except ImportError:
        log.warning("run.wandb=true but wandb is not installed (pip install wandb); not tracked")
        return
    try:
        run = wandb.init(project=cfg.run.wandb_project, config=result.get("config", {}), dir=str(out_dir),
                         mode=wandb_mode(), name=Path(out_dir).name, reinit="finish_previous",
                         settings=wandb.Settings(silent=True))
        run.summary.update(flat_metrics(result))
        per_step = (result.get("latency") or {}).get("per_step_s") or []
        for i, t in enumerate(per_step):
            run.log({"step_latency_s": t}, step=i)
        if per_step:
            import matplotlib.pyplot as plt

            fig = _latency_figure(per_step)
            run.log({"latency_per_step": wandb.Image(fig)})
            plt.close(fig)
        if result.get("scores"):
            table = wandb.Table(columns=["task", "score"], data=[[k, v] for k, v in result["scores"].items()])
            run.log({"scores": table})
        run.finish()
    except Exception as exc:  # noqa: BLE001 - tracking is never worth a failed job
        log.warning("wandb tracking failed (%s: %s); the result is in %s", type(exc).__name__, exc, out_dir)
