# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. SparseD's hyper-parameters: accuracy and cost against select and block size (Figure 6 b, c)
#
# The paper sweeps the kept fraction ρ (`sparsed.select`) on RULER-4k and times one 64k generation on
# an A800: accuracy rises steeply up to ρ = 20-30 % and then saturates, latency rises with ρ. Here, from a
# sweep of `sparsed.analysis.sweep` (a few RULER samples per task, one dense generation and one per setting):
#
# * **accuracy**: RULER's metric, averaged over tasks;
# * **attention density**: attended (query, key) pairs over all pairs, over every step (dense steps count
#   1): the attention cost as a fraction of dense, independent of the device;
# * **time**: the generation's seconds on the sweep's device (on a CPU and at a short length these say
#   little about a GPU at 64k: see notebook 5 for the GPU latency).
#
# With `SPARSED_FIG_SIZE=small` and the shipped model the sweep is read from
# `results/analysis/sweep_small.json` (its command is in the file; about an hour on two shared CPU cores);
# any other model or size runs the sweep here.

# %%
import json
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "sparsed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt  # noqa: E402

from sparsed.analysis.notebook import start  # noqa: E402
from sparsed.analysis.paper import paper_numbers  # noqa: E402
from sparsed.analysis.sweep import run_sweep  # noqa: E402

nb = start("hyperparameters")
P = nb.params
path = ROOT / P["sweep"] if P.get("sweep") else None
sweep = json.loads(path.read_text()) if path is not None and path.is_file() else None
if sweep is not None and sweep.get("model_overrides") != nb.model:
    sweep = None  # the committed sweep is another model's
if sweep is None:
    from sparsed.analysis.workbench import load_bench

    bench = load_bench(nb.model)
    sweep = run_sweep(bench, tasks=P["tasks"], length=P["length"], n=P["n"], selects=P["selects"], blocks=P["blocks"],
                      block=P["block"], select=P["select"], steps=P["steps"], gen_length=P["gen_length"])
    source = "computed in this notebook"
else:
    source = str(path.relative_to(ROOT))
rows = sweep["rows"]
dense = rows["dense"]
print(f"{sweep['model']}: {len(sweep['tasks'])} tasks x {sweep['n']} samples at {sweep['length']} tokens "
      f"({source}, {sweep['device']['name']})")


def curve(key: str, value: float) -> tuple[list[float], list[dict]]:
    other = "block_size" if key == "select" else "select"
    sel = sorted((r for r in rows.values() if r["select"] is not None and r[other] == value), key=lambda r: r[key])
    return [r[key] for r in sel], sel


# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.3), layout="constrained")
paper = paper_numbers()["fig6"]
for ax, key, fixed, label in ((axes[0], "select", sweep["block"], f"block size {sweep['block']}"),
                              (axes[1], "block_size", sweep["select"], f"select {sweep['select']}")):
    xs, sel = curve(key, fixed)
    ax.plot(xs, [r["accuracy"] for r in sel], "o-", color="C3", label=f"SparseD accuracy ({label})")
    ax.axhline(dense["accuracy"], color="k", ls=":", lw=1, label=f"dense accuracy {dense['accuracy']:.1f}")
    if key == "select":
        for model, style in (("llada", "s"), ("dream", "^")):
            pts = paper[model]["select"]
            ax.plot([float(s) for s in pts], list(pts.values()), style, color="C7", alpha=0.8,
                    label=f"paper {model} RULER-4k (A800)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel(key)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    tw = ax.twinx()
    tw.plot(xs, [r["mean_density"] for r in sel], "s--", color="C0", label="attention density")
    tw.plot(xs, [r["mean_seconds"] / dense["mean_seconds"] for r in sel], "d:", color="C2",
            label=f"time / dense time ({sweep['device']['name']})")
    tw.set_ylabel("fraction of dense")
    tw.set_ylim(0, max(1.5, max(r["mean_seconds"] / dense["mean_seconds"] for r in sel) * 1.1))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = tw.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
fig.suptitle(f"{sweep['model']}: {len(sweep['tasks'])} RULER tasks x {sweep['n']} samples, {sweep['length']} tokens, "
             f"skip {sweep['skip']}")
nb.save(fig, "hyperparameters")
plt.show()

# %%
by_select = {f"{x:g}": r["accuracy"] for x, r in zip(*curve("select", sweep["block"]), strict=True)}
by_block = {str(x): r["accuracy"] for x, r in zip(*curve("block_size", sweep["select"]), strict=True)}
print("accuracy by select:", by_select, "\naccuracy by block size:", by_block, "\ndense:", dense["accuracy"])
nb.report(source=source, model=sweep["model"], device=sweep["device"]["name"], tasks=sweep["tasks"], n=sweep["n"],
          length=sweep["length"], dense_accuracy=dense["accuracy"], accuracy_by_select=by_select,
          accuracy_by_block=by_block,
          density_by_select={f"{x:g}": r["mean_density"] for x, r in zip(*curve("select", sweep["block"]), strict=True)},
          time_ratio_by_select={f"{x:g}": r["mean_seconds"] / dense["mean_seconds"]
                                for x, r in zip(*curve("select", sweep["block"]), strict=True)},
          best_select_within_1pt=min((float(k) for k, v in by_select.items() if v >= dense["accuracy"] - 1), default=None))
print(nb.finish())
