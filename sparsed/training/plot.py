"""Loss curve of a training run: ``python -m sparsed.training.plot OUT/log.jsonl [OUT/loss.png]``.

matplotlib is optional (the training machine may lack it): ``plot_loss`` returns None without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def ema(values: list[float], alpha: float) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def plot_loss(log_path: Path, png_path: Path | None = None, smooth: float = 0.9) -> Path | None:
    """Write the loss (raw and EMA-smoothed) and learning rate against step; None if no matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in read_log(log_path) if "loss" in r]
    if not rows:
        return None
    png_path = png_path or Path(log_path).with_name("loss.png")
    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="loss")
    ax.plot(steps, ema(loss, smooth), lw=1.5, label=f"EMA {smooth}")
    ax.set_ylabel("SFT diffusion loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax_lr.plot(steps, [r.get("lr", 0.0) for r in rows], color="gray")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m sparsed.training.plot LOG.jsonl [OUT.png]")
    written = plot_loss(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(written or "matplotlib is not installed (or the log is empty): no plot written")
