"""The measured result files under ``results/`` as tables for the notebooks (the paper's Tables 1, 2 and 4 and
Figures 4 and 5, ours beside the paper's), each labelled with the model, the device and the sample count.

Nothing is measured here: every number is read from a result file (or composed from measured per-step
times the way ``scripts/bench_latency.py`` composes them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TASKS = ["niah_single_1", "niah_single_2", "niah_single_3", "niah_multikey_1", "niah_multikey_2", "niah_multikey_3",
         "niah_multiquery", "niah_multivalue", "vt", "cwe", "fwe"]
SHORT = dict(zip(TASKS, ["S1", "S2", "S3", "MK1", "MK2", "MK3", "MQ", "MV", "VT", "CWE", "FWE"], strict=True))
# this repository's row names -> the paper's method names (Table 1)
PAPER_ROW = {"dense": "dense", "sparsed": "sparsed", "sliding_window": "sliding_window", "prefix+thr0.9": "fast_dllm",
             "dkv_greedy": "dkv_greedy"}


def load(path: str | Path) -> dict[str, Any]:
    return json.loads((ROOT / path).read_text())


@dataclass
class AccuracyTable:
    """RULER scores per (length, row, task) from one result file."""

    source: str
    device: str
    samples: int
    fill: str
    scores: dict[str, dict[str, dict[str, float]]]  # length -> row -> task -> score
    notes: list[str] = field(default_factory=list)

    def common_tasks(self, length: str, rows: list[str] | None = None) -> list[str]:
        rows = rows or list(self.scores[length])
        return [t for t in TASKS if all(t in self.scores[length][r] for r in rows)]

    def average(self, length: str, row: str, tasks: list[str]) -> float:
        return sum(self.scores[length][row][t] for t in tasks) / len(tasks)


def accuracy_table(path: str) -> AccuracyTable:
    d = load(path)
    dev = (d.get("device") or {}).get("name", "unknown")
    return AccuracyTable(path, dev, int(d.get("limit") or 0), d.get("fill", "tight"), d["scores"])


@dataclass
class LatencyTable:
    """Composed end-to-end seconds (T = 128, 128 generated tokens) per length and method, per step count at 64k."""

    source: str
    device: str
    shape: str
    by_length: dict[int, dict[str, float]]
    by_steps: dict[int, dict[str, float]]
    steps: dict[int, dict[str, Any]]  # length -> measured per-step medians


def latency_table(*paths: str) -> LatencyTable:
    """One model shape's latency from one or several ``bench_latency.py`` runs. A later run's length replaces
    an earlier one's (each length's ratios stay within one run); Figure 5 comes from the run that reached
    64k. ``source`` lists the files, ``device`` must be the same in all."""
    shape, devices = None, set()
    by_length: dict[int, dict[str, float]] = {}
    steps: dict[int, dict[str, Any]] = {}
    by_steps: dict[int, dict[str, float]] = {}
    for path in paths:
        d = load(path)
        (name, comp), = d["composed"].items()
        if shape not in (None, name):
            raise ValueError(f"{path}: shape {name}, the earlier files are {shape}")
        shape = name
        devices.add(d["device"]["name"])
        by_length |= {int(k): v for k, v in comp.items()}
        steps |= {int(k): v for k, v in d["results"][name].items()}
        if "65536" in comp and name in d.get("fig5", {}):
            by_steps = {int(k): v for k, v in d["fig5"][name].items()}
    if len(devices) != 1:
        raise ValueError(f"latency runs on different devices: {sorted(devices)}")
    return LatencyTable(", ".join(paths), devices.pop(), shape, dict(sorted(by_length.items())), by_steps, steps)


def ablation_latency(step: dict[str, Any], steps: int = 128, skip: float = 0.2) -> dict[str, float]:
    """Table 2's latency rows composed from measured per-step medians (SparseD's released schedule).

    SparseD: steps 0..int(T*skip) dense, the build step (a dense step plus the pattern), sparse after.
    No skipping (skip = 0): one dense step, the build step, T-2 sparse steps. No reusing: every sparse
    step builds its pattern again (a sparse step plus the build step's extra over a dense step).
    """
    dense, build, sparse = (step[k]["median_s"] for k in ("dense_cudnn", "sparsed_build_step", "sparsed_sparse_step"))

    def sparsed(skip_: float, rebuild: bool) -> float:
        n_dense = int(steps * skip_) + 1
        n_sparse = steps - n_dense - 1
        return n_dense * dense + build + n_sparse * (sparse + (build - dense if rebuild else 0.0))

    return {"dense": steps * dense, "sparsed": sparsed(skip, False), "no_skip": sparsed(0.0, False),
            "no_reuse": sparsed(skip, True)}


def kernel_speedups(path: str = "results/kernels_h100.json") -> dict[str, Any]:
    """Per length: the fastest dense kernel, and each block-sparse kernel's speed-up over it."""
    d = load(path)
    out: dict[int, dict[str, float]] = {}
    for r in d["rows"]:
        if r.get("kind") not in ("dense", "sparse"):
            continue
        out.setdefault(int(r["L"]), {})[f"{r['kind']}:{r['kernel']}"] = r["ms"]
    table = {}
    for L, ms in sorted(out.items()):
        fastest = min(v for k, v in ms.items() if k.startswith("dense:"))
        table[L] = {"fastest_dense_ms": fastest, **{k[7:]: fastest / v for k, v in ms.items() if k.startswith("sparse:")}}
    return {"device": d["device"]["name"], "by_length": table}


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:  # noqa: ANN401
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
