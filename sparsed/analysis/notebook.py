"""Parameters and outputs of the analysis notebooks (``analysis/*.py``, jupytext percent format).

A notebook reads its parameters from the environment, so the same file runs in Jupyter, as a plain
script and under ``python -m sparsed.analysis.figures``:

* ``SPARSED_FIG_MODEL``: Hydra overrides naming the model (default ``model=small``), e.g.
  ``"model=llada model.path=/ckpt/LLaDA-1.5 model.device=cuda"``;
* ``SPARSED_FIG_SIZE``: ``ci`` (seconds, for the test), ``small`` (the default: the shipped model on two
  CPU cores) or ``full`` (the paper's sizes, for real checkpoints on a GPU);
* ``SPARSED_FIG_OUT``: where figures (PNG and PDF) and the statistics (``<notebook>.json``) go
  (default ``analysis/figures``);
* ``SPARSED_FIG_THREADS``: torch's CPU threads (unset: torch's default). On a shared two-core machine one
  thread per notebook, two notebooks at a time, beats two threads each: the small model's many small
  operations lose more to thread synchronisation than they gain.

Every figure a notebook saves and every statistic it reports lands in ``<out>/<notebook>.json``, which
the figure runner and the CI test check (files exist, numbers finite).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsed.analysis.sizes import SIZES, size_of

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Notebook:
    name: str
    model: list[str]
    size: str
    out: Path
    params: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def save(self, fig: Any, name: str, dpi: int = 110) -> Path:  # noqa: ANN401 - a matplotlib figure
        """PNG and PDF of ``fig`` under the output folder; returns the PNG."""
        self.out.mkdir(parents=True, exist_ok=True)
        png = self.out / f"{name}.png"
        fig.savefig(png, dpi=dpi, bbox_inches="tight")
        fig.savefig(self.out / f"{name}.pdf", bbox_inches="tight")
        self.figures += [png.name, f"{name}.pdf"]
        return png

    def report(self, **stats: Any) -> None:  # noqa: ANN401
        """Statistics of the notebook (numbers, lists and dicts of numbers, strings)."""
        self.stats.update(stats)

    def finish(self) -> Path:
        """Write ``<out>/<name>.json``; raise if a reported number is not finite."""
        bad = [k for k, v in flatten(self.stats).items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"non-finite statistics in {self.name}: {', '.join(bad[:10])}")
        path = self.out / f"{self.name}.json"
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"notebook": self.name, "model": self.model, "size": self.size,
                                    "params": self.params, "figures": self.figures, "stats": self.stats,
                                    "seconds": round(time.time() - self.started, 1)}, indent=1, default=float) + "\n")
        return path


def start(name: str) -> Notebook:
    """The parameters of notebook ``name`` from the environment (see the module docstring)."""
    model = shlex.split(os.environ.get("SPARSED_FIG_MODEL", "model=small"))
    size = os.environ.get("SPARSED_FIG_SIZE", "small")
    if size not in SIZES:
        raise ValueError(f"SPARSED_FIG_SIZE={size!r}; choose one of: {', '.join(SIZES)}")
    out = Path(os.environ.get("SPARSED_FIG_OUT", str(ROOT / "analysis" / "figures")))
    threads = os.environ.get("SPARSED_FIG_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return Notebook(name, model, size, out, size_of(name, size))


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:  # noqa: ANN401
    """Nested dicts and lists as {"a.b.0": value}."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out |= flatten(v, f"{prefix}{k}.")
        return out
    if isinstance(obj, list | tuple):
        out = {}
        for i, v in enumerate(obj):
            out |= flatten(v, f"{prefix}{i}.")
        return out
    return {prefix.rstrip("."): obj}
