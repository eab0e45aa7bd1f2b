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
# # 3. Early steps matter (the paper's Figure 2, and Figure 6a's accuracy against skip)
#
# The paper generates with sparse attention from step x on (**Full->Sparse**: dense for the first x
# steps) or until step x (**Sparse->Full**) for every x, and plots an undefined "loss": sparse attention
# in the early steps costs much more than in the late ones, so SparseD runs the first 20 % dense.
#
# Two sparse rules (`sparsed.analysis.early_steps`):
#
# * **token top-30 %**: every query keeps the 30 % of its keys with the highest scores (the paper's
#   Figure 2, its Eq. 2);
# * **SparseD's block pattern**: built by the SparseD method itself from the dense attention of the step
#   before the switch (Algorithm 1: the last dense step; at x = 0 and for Sparse->Full, step 0's). Under
#   the released schedule (`compat=reference`) Full->Sparse(int(T*skip)+2) *is* SparseD with that skip,
#   which gives the accuracy-against-skip panel (Figure 6a).
#
# **Losses** (all against the dense generation of the same prompt):
#
# * **commit KL**: the mean over generation positions of KL(dense || run) between the distributions
#   each run committed that position from (the softmax of the step it stopped being a mask), in nats;
# * **token mismatch**: the share of generated tokens that differ from the dense run's;
# * **accuracy**: RULER's metric of the answers over the prompts.
#
# A per-step view beside them, **single-step distortion**: at every step t of the dense generation, the
# mean KL(dense || sparse) over the positions still masked, of one forward on that step's canvas (the
# SparseD rule with the pattern of step t-1).
#
# Two runs: every x of a T = 32 generation, and a coarser grid of a T = 128 one (one block of T tokens).
# Identical forwards across the generations are computed once (`sparsed.analysis.memo`).

# %%
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "sparsed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparsed.analysis import early_steps as es  # noqa: E402
from sparsed.analysis.notebook import start  # noqa: E402
from sparsed.analysis.paper import paper_numbers  # noqa: E402
from sparsed.analysis.workbench import load_bench  # noqa: E402
from sparsed.attention.methods.sparsed import SparseDSettings  # noqa: E402

nb = start("early_steps")
P = nb.params
bench = load_bench(nb.model)
sparsed = SparseDSettings(select=P["select"], block_size=P["block"])
print(bench.name, P, sparsed)

# %%
results: dict[str, es.Curves] = {}
work: dict[str, dict] = {}
for run in ("grid", "coarse"):
    R = P[run]
    T = R["steps"]
    xs = list(range(T + 1)) if R["xs"] == "all" else R["xs"]
    ablations = []
    for task, length in R["prompts"]:
        sample = bench.ruler(task, length, 1, R["gen_length"], fill="tight")[0]
        a = es.ablate_prompt(bench.model, sample["ids"], bench.gen(T, R["gen_length"]), xs, sparsed, P["ratio"],
                             scorer=lambda toks, s=sample: bench.score(s, toks))
        ablations.append(a)
        print(f"T={T} {task} ({sample['ids'].shape[1]} tokens): dense answer "
              f"{bench.tokenizer.decode(a.dense_tokens, skip_special_tokens=True)!r} (gold {sample['outputs']}), "
              f"{a.notes['generations']} generations, {a.forwards} forwards computed of {a.calls}")
    results[run] = es.curves(ablations)
    work[run] = {"forwards": sum(a.forwards for a in ablations), "calls": sum(a.calls for a in ablations)}

# %%
FLOOR = 1e-9  # KL below this (including the float32 rounding noise around 0) is drawn at the floor
STYLE = {"token_topk/full_to_sparse": ("C0", "-", "top-30 %: Full->Sparse"),
         "token_topk/sparse_to_full": ("C0", "--", "top-30 %: Sparse->Full"),
         "sparsed/full_to_sparse": ("C3", "-", "SparseD blocks: Full->Sparse"),
         "sparsed/sparse_to_full": ("C3", "--", "SparseD blocks: Sparse->Full")}


def plot_run(c: es.Curves, name: str) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2), layout="constrained")
    for key, (color, ls, label) in STYLE.items():
        axes[0].plot(c.xs, np.maximum(c.kl[key], FLOOR), color=color, ls=ls, label=label, marker=".")
        axes[1].plot(c.xs, 100 * np.array(c.mismatch[key]), color=color, ls=ls, label=label, marker=".")
        axes[2].plot(c.xs, c.score[key], color=color, ls=ls, label=label, marker=".")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("commit KL vs dense (nats per position)")
    axes[1].set_ylabel("generated tokens differing from dense (%)")
    axes[2].axhline(c.dense_score, color="k", lw=0.8, ls=":", label="dense")
    axes[2].set_ylabel(f"accuracy over {c.prompts} prompt(s) (%)")
    for ax in axes[:3]:
        ax.set_xlabel("switch step x")
        ax.axvline(round(0.2 * c.steps), color="gray", lw=0.8, ls=":")
    axes[0].legend(fontsize=8)
    for rule, color in (("token_topk", "C0"), ("sparsed", "C3")):
        axes[3].plot(range(c.steps), np.maximum(c.sensitivity[rule], FLOOR), color=color,
                     label={"token_topk": "top-30 %", "sparsed": "SparseD blocks"}[rule])
    axes[3].set_yscale("log")
    axes[3].set_xlabel("step t of the dense generation")
    axes[3].set_ylabel("single-step KL over masked positions")
    axes[3].legend(fontsize=8)
    fig.suptitle(f"{bench.cfg.model.name}: sparse attention from / until step x, T = {c.steps} "
                 f"(gray: 20 % of the steps)")
    nb.save(fig, name)
    plt.show()


plot_run(results["grid"], "early_steps_T32" if results["grid"].steps == 32 else "early_steps_grid")
plot_run(results["coarse"], "early_steps_T128" if results["coarse"].steps == 128 else "early_steps_coarse")

# %% [markdown]
# ## Figure 6a's counterpart: SparseD's accuracy and loss against skip
#
# Full->Sparse(x) with SparseD's pattern of step x-1 is SparseD (released schedule) with skip = (x-2)/T;
# the paper's grid is 0, 5, 10, 20, 30, 50 %.

# %%
c = results["grid"]
T = c.steps
skips = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5]
at = {s: int(T * s) + 2 for s in skips if int(T * s) + 2 < T}
xi = {x: c.xs.index(x) for x in at.values()}
acc = {s: c.score["sparsed/full_to_sparse"][xi[x]] for s, x in at.items()}
kl = {s: c.kl["sparsed/full_to_sparse"][xi[x]] for s, x in at.items()}
paper = paper_numbers()["fig6"]
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
ax0.plot([100 * s for s in acc], list(acc.values()), marker="o", label=f"{bench.cfg.model.name} ({c.prompts} prompts)")
for model, style in (("llada", "s--"), ("dream", "^--")):
    pts = paper[model]["skip"]
    ax0.plot([100 * float(s) for s in pts], list(pts.values()), style, label=f"paper, {model} RULER-4k", alpha=0.7)
ax0.axhline(c.dense_score, color="k", lw=0.8, ls=":", label="dense (ours)")
ax0.set_xlabel("skip (%)")
ax0.set_ylabel("accuracy (%)")
ax0.legend(fontsize=8)
ax1.plot([100 * s for s in kl], np.maximum(list(kl.values()), FLOOR), marker="o")
ax1.set_yscale("log")
ax1.set_xlabel("skip (%)")
ax1.set_ylabel("commit KL vs dense (nats per position)")
fig.suptitle(f"SparseD against skip (T = {T}, select {P['select']}, block {P['block']})")
nb.save(fig, "skip_ablation")
plt.show()

# %%
summary = {}
for run, cv in results.items():
    summary[run] = {
        "steps": cv.steps, "xs": cv.xs, "prompts": cv.prompts, "dense_accuracy": cv.dense_score,
        "kl": cv.kl, "mismatch": cv.mismatch, "accuracy": cv.score, "single_step_kl": cv.sensitivity,
        "early_share_20pct": {rule: cv.early_share(rule) for rule in es.RULES},
        "max_mismatch": {k: float(max(v)) for k, v in cv.mismatch.items()},
        "single_step_kl_late_over_early": {
            rule: float(np.mean(v[-max(1, cv.steps // 5):]) / np.mean(v[: max(1, cv.steps // 5)]))
            for rule, v in cv.sensitivity.items()},
        **work[run],
    }
    for rule in es.RULES:
        e = summary[run]["early_share_20pct"][rule]
        print(f"T={cv.steps} {rule}: dense first {e['x']:.0f} steps remove {e['dense_prefix_removes']:.1%} of the "
              f"all-sparse KL ({e['all_sparse_kl']:.2e}); sparse first {e['x']:.0f} steps cause "
              f"{e['sparse_prefix_causes']:.1%}; max token mismatch "
              f"{100 * max(summary[run]['max_mismatch'][f'{rule}/{d}'] for d in es.DIRECTIONS):.1f} %")
nb.report(model=bench.name, sparsed={"select": P["select"], "block_size": P["block"], "compat": sparsed.compat},
          ratio=P["ratio"], runs=summary, skip_accuracy={str(k): v for k, v in acc.items()},
          skip_kl={str(k): v for k, v in kl.items()})
print(nb.finish())
