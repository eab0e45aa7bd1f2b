"""Loss curves of training runs.

    python -m sparsed.training.plot OUT/log.jsonl [OUT/loss.png]
    python -m sparsed.training.plot --stitch S1/log.jsonl S2/log.jsonl ... --out log.jsonl --png loss.png

A run continued from another one's weights (``--init-from``) starts its own log at step 0; ``stitch``
joins such stages into one log whose step, elapsed time and tokens count from the first stage's start
(each row keeps its stage number and its own step). The plot marks the stage boundaries and, where the
log has them, adds the per-task answer accuracy (EMA-smoothed).

matplotlib is optional (the training machine may lack it): ``plot_loss`` returns None without it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def stitch(paths: list[Path]) -> list[dict]:
    """One log of consecutive stages: cumulative step/elapsed/tokens_seen, plus stage and stage_step."""
    out: list[dict] = []
    step0 = elapsed0 = tokens0 = 0
    for stage, path in enumerate(paths, start=1):
        rows = read_log(path)
        for r in rows:
            out.append(r | {"stage": stage, "stage_step": r["step"], "step": step0 + r["step"],
                            "elapsed": round(elapsed0 + r.get("elapsed", 0.0), 2),
                            "tokens_seen": tokens0 + r.get("tokens_seen", 0)})
        if rows:
            step0 += rows[-1]["step"]
            elapsed0 += rows[-1].get("elapsed", 0.0)
            tokens0 += rows[-1].get("tokens_seen", 0)
    return out


def ema(values: list[float], alpha: float) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else alpha * acc + (1 - alpha) * v
        out.append(acc)
    return out


def _task_series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in rows:
        for task, acc in r.get("task_acc", {}).items():
            steps, values = series.setdefault(task, ([], []))
            steps.append(r["step"])
            values.append(acc)
    return series


def plot_loss(log_path: Path, png_path: Path | None = None, smooth: float = 0.9) -> Path | None:
    """Loss (raw and EMA), per-task answer accuracy when logged, and learning rate, against step."""
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
    tasks = _task_series(rows)
    panels = 3 if tasks else 2
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3 + 2.6 * (panels - 1)), sharex=True,
                             height_ratios=[3, 3, 1][:panels] if tasks else [3, 1])
    ax, ax_lr = axes[0], axes[-1]
    ax.plot(steps, loss, alpha=0.3, lw=0.8, label="loss")
    ax.plot(steps, ema(loss, smooth), lw=1.5, label=f"EMA {smooth}")
    ax.set_ylabel("diffusion loss")
    ax.set_yscale("log")
    if tasks:
        ax_acc = axes[1]
        colors = plt.cm.tab20.colors  # 13 tasks: tab10 would repeat colours
        for i, (task, (t_steps, values)) in enumerate(sorted(tasks.items())):
            ax_acc.plot(t_steps, ema(values, smooth), lw=1.1, color=colors[i % len(colors)],
                        label=task.replace("niah_", ""))
        ax_acc.set_ylabel("answer-token accuracy\n(masked, EMA)")
        ax_acc.set_ylim(0, 1.02)
        ax_acc.legend(fontsize=7, ncol=5, loc="lower right")
    ax_lr.plot(steps, [r.get("lr", 0.0) for r in rows], color="gray")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("step (cumulative over stages)" if "stage" in rows[0] else "step")
    starts = [r["step"] for prev, r in zip(rows, rows[1:], strict=False) if r.get("stage") != prev.get("stage")]
    for a in axes:
        a.grid(alpha=0.3)
        for s in starts:
            a.axvline(s, color="black", lw=0.8, ls="--")
    ax.legend()
    fig.tight_layout()
    tmp = png_path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+", type=Path,
                    help="log.jsonl [loss.png], or with --stitch several logs in stage order")
    ap.add_argument("--png", type=Path, default=None, help="the figure (default: loss.png beside the log)")
    ap.add_argument("--stitch", action="store_true", help="join consecutive stages into --out first")
    ap.add_argument("--out", type=Path, help="the stitched log (with --stitch)")
    a = ap.parse_args(argv)
    log_path = a.logs[0]
    if a.stitch:
        if a.out is None:
            ap.error("--stitch needs --out")
        a.out.write_text("".join(json.dumps(r) + "\n" for r in stitch(a.logs)))
        log_path = a.out
    elif len(a.logs) > 2:
        ap.error("several logs need --stitch")
    elif len(a.logs) == 2:
        if a.logs[1].suffix != ".png":
            ap.error("several logs need --stitch")
        a.png = a.logs[1]
    written = plot_loss(log_path, a.png)
    print(written or "matplotlib is not installed (or the log is empty): no plot written")


if __name__ == "__main__":
    main()
