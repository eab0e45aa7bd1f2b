"""SparseD's hyper-parameters against accuracy and cost (the paper's Figure 6 b, c), on any model.

For every sample of a few RULER tasks: one dense generation, then SparseD at each ``select`` (at one block
size) and each ``block_size`` (at one select). Per setting: the accuracy (RULER's metric), the realised
attention density (attended query-key pairs over all pairs, over every step: the attention FLOPs as a
fraction of dense, device-independent) and the generation time on this device. One block of T = the
task's generation length (Table 3 of the paper).

    python -m sparsed.analysis.sweep --out results/analysis/sweep_small.json      # the committed small sweep
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import numpy as np

from sparsed.analysis.workbench import Bench, load_bench
from sparsed.attention import build_method
from sparsed.results import device_info, versions, write_json_atomic
from sparsed.sampling.dispatch import sample

GEN = {"niah_single_1": 32, "niah_single_2": 32, "niah_multikey_1": 32, "niah_multikey_2": 32, "vt": 32,
       "niah_single_3": 64, "niah_multikey_3": 64, "niah_multiquery": 64, "niah_multivalue": 64, "fwe": 64, "cwe": 128}


def settings_grid(selects: list[float], blocks: list[int], block: int, select: float) -> list[tuple[float, int]]:
    """(select, block_size) pairs: every select at ``block``, every block size at ``select``."""
    grid = [(s, block) for s in selects] + [(select, b) for b in blocks]
    return sorted(set(grid), key=lambda sb: (sb[1], sb[0]))


def run_sweep(bench: Bench, *, tasks: list[str], length: int, n: int, selects: list[float], blocks: list[int],
              block: int, select: float, skip: float = 0.2, steps: int | None = None, gen_length: int | None = None,
              seed: int = 0, log: bool = True) -> dict[str, Any]:
    """Accuracy, density and time per (select, block_size) and for dense; ``steps``/``gen_length`` override
    the task's generation length."""
    facts = bench.model.args.facts
    grid = settings_grid(selects, blocks, block, select)
    rows: dict[str, dict[str, Any]] = {"dense": _row(None, None)}
    rows |= {_name(s, b): _row(s, b) for s, b in grid}
    t_start = time.time()
    # every sample first: a task that does not fit the length fails before any generation
    samples = {task: bench.ruler(task, length, n, gen_length or GEN.get(task, 32), seed=seed) for task in tasks}
    for task in tasks:
        g = gen_length or GEN.get(task, 32)
        gen = bench.gen(steps or g, g)
        for smp in samples[task]:
            for row in rows.values():
                method = (build_method("dense", {}, facts=facts) if row["select"] is None else
                          build_method("sparsed", {"skip": skip, "select": row["select"], "block_size": row["block_size"]},
                                       facts=facts))
                out = sample(bench.model, smp["ids"], gen, method)
                tokens = out.generated[0].tolist()
                row["scores"].setdefault(task, []).append(bench.score(smp, tokens))
                row["seconds"].append(out.total_time)
                row["density"].append(method.report()["density_mean"])
                row["prompt_tokens"].append(int(smp["ids"].shape[1]))
            if log:
                print(f"{task} sample {smp['index']}: " + ", ".join(f"{k} {v['scores'][task][-1]:.0f}"
                                                                    for k, v in rows.items()), flush=True)
    for row in rows.values():
        per_task = {t: float(np.mean(v)) for t, v in row["scores"].items()}
        row |= {"per_task": per_task, "accuracy": float(np.mean(list(per_task.values()))),
                "mean_seconds": float(np.mean(row["seconds"])), "mean_density": float(np.mean(row["density"]))}
    return {"model": bench.name, "model_overrides": None, "tasks": tasks, "length": length, "n": n, "skip": skip,
            "selects": selects, "blocks": blocks, "block": block, "select": select, "steps": steps,
            "gen_length": gen_length, "seed": seed, "rows": rows, "elapsed_s": round(time.time() - t_start, 1),
            "device": device_info(bench.model.device), "versions": versions()}


def _name(select: float, block: int) -> str:
    return f"select{select:g}_block{block}"


def _row(select: float | None, block: int | None) -> dict[str, Any]:
    return {"select": select, "block_size": block, "scores": {}, "seconds": [], "density": [], "prompt_tokens": []}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="model=small", help="Hydra overrides naming the model")
    ap.add_argument("--tasks", nargs="+", default=["niah_single_2", "niah_multikey_2", "niah_multikey_3",
                                                   "niah_multivalue"])
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--n", type=int, default=3, help="samples per task")
    ap.add_argument("--selects", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    ap.add_argument("--blocks", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--block", type=int, default=32, help="block size of the select sweep")
    ap.add_argument("--select", type=float, default=0.3, help="select of the block-size sweep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    overrides = shlex.split(args.model)
    result = run_sweep(load_bench(overrides), tasks=args.tasks, length=args.length, n=args.n, selects=args.selects,
                       blocks=args.blocks, block=args.block, select=args.select)
    result["model_overrides"] = overrides
    result["command"] = "python -m sparsed.analysis.sweep " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_json_atomic(args.out, result)
    print(f"wrote {args.out} ({result['elapsed_s']} s)")


if __name__ == "__main__":
    main()
