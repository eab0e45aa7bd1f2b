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
# # 5. Tables and latency (the paper's Tables 1, 2 and 4, Figures 4 and 5), ours beside the paper's
#
# Everything here is read from measured result files under `results/` (`sparsed.analysis.tables`) and
# from `experiments/paper_numbers.yaml`; nothing is computed on this machine. Each number is labelled
# with its model and device: the paper's are LLaDA-1.5 / Dream-7B-Instruct on an A800; ours are the
# project's 9.7M-parameter small model (accuracy; RULER at 2k and 4k, it has no 8k context) and the
# LLaDA-8B / Dream-7B **architectures with random weights** (latency; an H100 for the kernels and the 16k
# end-to-end run, an H200 for the per-step times composed into Figures 4 and 5).

# %%
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "sparsed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparsed.analysis import tables as tb  # noqa: E402
from sparsed.analysis.notebook import start  # noqa: E402
from sparsed.analysis.paper import RULER_COLUMNS, paper_numbers  # noqa: E402

nb = start("tables")
paper = paper_numbers()
card = tb.accuracy_table("results/small_dlm/ruler_stage3_n50.json")
caches = tb.accuracy_table("results/cache_small/accuracy_h200.json")
# every H200 run of a shape: a later run's lengths (Dream 4k-32k, the FA4 run at LLaDA 4k) replace earlier ones
LATENCY_RUNS = {"llada8b": ["h200_llada8b.json", "h200_llada8b_4k_fa4_validation.json"],
                "dream7b": ["h200_dream7b.json", "h200_dream7b_4k32k.json"]}
lat = {s: tb.latency_table(*(f"results/latency/{f}" for f in files)) for s, files in LATENCY_RUNS.items()}
kernels = tb.kernel_speedups()
md: list[str] = []

# %% [markdown]
# ## Table 1: RULER accuracy of every method (averages)

# %%
METHODS = ["dense", "sparsed", "sliding_window", "streaming_llm", "fast_dllm", "dkv"]
fig, axes = plt.subplots(1, 2, figsize=(15, 4.4), layout="constrained")
w = 0.2
for i, (model, col) in enumerate([(m, c) for m in ("llada", "dream") for c in ("RULER-4k", "RULER-8k")]):
    t1 = paper["table1"][model]
    vals = [t1.get(m if m != "dkv" else ("dkv_greedy" if model == "llada" else "dkv_pd"), {}).get(col, np.nan)
            for m in METHODS]
    axes[0].bar(np.arange(len(METHODS)) + (i - 1.5) * w, vals, w,
                label=f"{'LLaDA-1.5' if model == 'llada' else 'Dream-7B'} {col}")
axes[0].set_xticks(range(len(METHODS)), METHODS)
axes[0].set_ylabel("RULER average (%)")
axes[0].set_title("paper (A800; 13 tasks)")
axes[0].legend(fontsize=8)
ours = []
for length in ("2048", "4096"):
    rows = list(card.scores[length])
    tasks = card.common_tasks(length)
    ours += [(f"{r}\n{length[:1]}k tight", card.average(length, r, tasks)) for r in rows]
ctasks = caches.common_tasks("2048", ["dense", "sparsed", "prefix+thr0.9", "dkv_greedy"])
ours += [(f"{r}\n2k official", caches.average("2048", r, ctasks)) for r in ("dense", "sparsed", "prefix+thr0.9", "dkv_greedy")]
axes[1].bar(range(len(ours)), [v for _, v in ours], color=["C0" if "tight" in k else "C1" for k, _ in ours])
axes[1].set_xticks(range(len(ours)), [k.replace("prefix+thr0.9", "fast_dllm") for k, _ in ours], fontsize=7)
axes[1].set_ylabel("RULER average (%)")
axes[1].set_title(f"ours: small model; blue {card.device}, {card.samples}/task, 11 tasks, tight fill; "
                  f"orange {caches.device}, {caches.samples}/task, {len(ctasks)} tasks, official fill", fontsize=8)
for ax in axes:
    ax.set_ylim(0, 105)
nb.save(fig, "table1_ruler")
plt.show()
md.append("### Table 1 (RULER averages)\n\n" + tb.markdown_table(
    ["model (device)", *METHODS],
    [[f"paper {m} {c} (A800)", *[paper["table1"][m].get(k if k != "dkv" else ("dkv_greedy" if m == "llada" else "dkv_pd"),
                                                        {}).get(c, "-") for k in METHODS]]
     for m in ("llada", "dream") for c in ("RULER-4k", "RULER-8k")]
    + [[f"ours small {L[:1]}k tight ({card.device}, {card.samples}/task)",
        *[round(card.average(L, r, card.common_tasks(L)), 2) if r in card.scores[L] else "-"
          for r in ("dense", "sparsed", "sliding_window", "streaming_llm", "fast_dllm", "dkv")]] for L in ("2048", "4096")]
    + [[f"ours small 2k official ({caches.device}, {caches.samples}/task, {len(ctasks)} tasks)",
        *[round(caches.average("2048", r, ctasks), 2) if r else "-"
          for r in ("dense", "sparsed", None, None, "prefix+thr0.9", "dkv_greedy")]]]))

# %% [markdown]
# ## Table 4: RULER per task (LLaDA-1.5 at 4k in the paper; the small model at 4k here)

# %%
rows4 = ["dense", "sparsed", "sliding_window"]
p4 = np.array([paper["table4"]["llada"]["RULER-4k"][r][:11] for r in rows4])
o4 = np.array([[card.scores["4096"][r][t] for t in tb.TASKS] for r in rows4])
fig, axes = plt.subplots(1, 2, figsize=(15, 3.2), layout="constrained")
for ax, data, title in ((axes[0], p4, "paper: LLaDA-1.5, RULER-4k (A800)"),
                        (axes[1], o4, f"ours: small model, 4k tight fill ({card.device}, {card.samples}/task)")):
    im = ax.imshow(data, vmin=0, vmax=100, cmap="RdYlGn", aspect="auto")
    for (i, j), v in np.ndenumerate(data):
        ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(11), RULER_COLUMNS[:11])
    ax.set_yticks(range(len(rows4)), rows4)
    ax.set_title(title, fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.8)
nb.save(fig, "table4_tasks")
plt.show()
md.append("### Table 4 (RULER 4k per task: paper LLaDA-1.5 / ours small model)\n\n" + tb.markdown_table(
    ["row", *RULER_COLUMNS[:11]],
    [[f"paper {r}", *paper["table4"]["llada"]["RULER-4k"][r][:11]] for r in rows4]
    + [[f"ours {r}", *[card.scores["4096"][r][t] for t in tb.TASKS]] for r in rows4]))

# %% [markdown]
# ## Table 2: the ablations' latency at 64k, T = 128 (ours composed from measured H200 step times)

# %%
abl = tb.ablation_latency(lat["llada8b"].steps[65536])
labels = ["dense", "sparsed", "no_skip", "no_reuse", "no_isolated"]
pt2 = paper["table2"]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
axes[0].bar(labels, [pt2[k]["latency-64k"] for k in labels], color="C7")
axes[0].set_title("paper: LLaDA-1.5, one 64k sample (A800)")
axes[1].bar(labels[:4], [abl[k] for k in labels[:4]], color="C0")
axes[1].set_title(f"ours: LLaDA-8B shape, random weights, composed ({lat['llada8b'].device})")
for ax in axes:
    ax.set_yscale("log")
    ax.set_ylabel("seconds per generation")
nb.save(fig, "table2_ablation")
plt.show()
md.append("### Table 2 (64k latency, T = 128, s)\n\n" + tb.markdown_table(
    ["row", "paper RULER-4k (%)", "paper latency (A800)", f"ours composed ({lat['llada8b'].device})"],
    [[k, pt2[k]["RULER-4k"], pt2[k]["latency-64k"], round(abl[k], 1) if k in abl else "not measured"] for k in labels]))

# %% [markdown]
# ## Figures 4 and 5: latency against context length and against the number of steps

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), layout="constrained")
L = sorted(lat["llada8b"].by_length)
xk = [f"{n // 1024}k" for n in L]
ours4 = lat["llada8b"].by_length
for key, label, color in (("fastest_dense", "fastest dense", "k"), ("sparsed", "SparseD", "C3"),
                          ("streaming_llm", "StreamingLLM", "C2"), ("prefix_dense", "prefix cache (Fast-dLLM)", "C1")):
    axes[0].plot(xk, [ours4[n][key] for n in L], marker="o", color=color, label=f"ours {label}")
for key, label, color in (("dense", "FlashAttention", "k"), ("sparsed", "SparseD", "C3"),
                          ("streaming_llm", "StreamingLLM", "C2")):
    pf = paper["fig4"]["llada"][key]
    axes[0].plot(list(pf), list(pf.values()), ls="--", marker="s", color=color, alpha=0.5, label=f"paper {label}")
axes[0].set_yscale("log")
axes[0].set_ylabel("seconds per generation (T = 128)")
axes[0].set_title(f"LLaDA-8B: ours {lat['llada8b'].device} (random weights), paper A800", fontsize=9)
axes[0].legend(fontsize=7)
sp = [ours4[n]["fastest_dense"] / ours4[n]["sparsed"] for n in L]
pf = paper["fig4"]["llada"]
for shape, fam, color in (("llada8b", "llada", "C3"), ("dream7b", "dream", "C0")):
    ours = lat[shape].by_length
    Ls = sorted(ours)
    axes[1].plot([f"{n // 1024}k" for n in Ls], [ours[n]["fastest_dense"] / ours[n]["sparsed"] for n in Ls], marker="o",
                 color=color, label=f"ours {shape}, Flex ({lat[shape].device})")
    fa4 = [n for n in Ls if "sparsed_fa4" in ours[n]]
    if fa4:
        axes[1].plot([f"{n // 1024}k" for n in fa4], [ours[n]["fastest_dense"] / ours[n]["sparsed_fa4"] for n in fa4],
                     marker="D", ls="-.", color=color, alpha=0.8, label=f"ours {shape}, FA4 block-sparse")
    pff = paper["fig4"][fam]
    axes[1].plot(list(pff["dense"]), [pff["dense"][k] / pff["sparsed"][k] for k in pff["dense"]], "s--", color=color,
                 alpha=0.5, label=f"paper {fam} (A800)")
ks = kernels["by_length"]
axes[1].plot([f"{n // 1024}k" for n in ks], [v["fa4_sparse"] for v in ks.values()], "^:", color="C4",
             label=f"attention kernel only, FA4 block-sparse ({kernels['device']})")
axes[1].axhline(1, color="k", lw=0.6)
axes[1].set_ylabel("speed-up of SparseD over dense")
axes[1].set_title("end-to-end speed-up against context length", fontsize=9)
axes[1].legend(fontsize=7)
for shape, color in (("llada8b", "C3"), ("dream7b", "C0")):
    f5 = lat[shape].by_steps
    T = sorted(f5)
    axes[2].plot(T, [f5[t]["fastest_dense"] / f5[t]["sparsed"] for t in T], marker="o", color=color,
                 label=f"ours {shape} ({lat[shape].device})")
    fam = "llada" if shape == "llada8b" else "dream"
    axes[2].plot([int(t) for t in paper["fig5"][fam]], list(paper["fig5"][fam].values()), "s--", color=color, alpha=0.5,
                 label=f"paper {fam} (A800)")
axes[2].set_xscale("log", base=2)
axes[2].set_xlabel("denoising steps T (64k context)")
axes[2].set_ylabel("speed-up of SparseD over dense")
axes[2].legend(fontsize=7)
nb.save(fig, "latency")
plt.show()
md.append("### Figure 4 (LLaDA-8B, T = 128, s per generation)\n\n" + tb.markdown_table(
    ["context", "paper dense (A800)", "paper SparseD", f"ours dense ({lat['llada8b'].device})", "ours SparseD",
     "ours speed-up", "paper speed-up"],
    [[k, pf["dense"].get(k, "-"), pf["sparsed"].get(k, "-"), ours4[n]["fastest_dense"], ours4[n]["sparsed"],
      round(ours4[n]["fastest_dense"] / ours4[n]["sparsed"], 2),
      round(pf["dense"][k] / pf["sparsed"][k], 2) if k in pf["dense"] else "-"] for n, k in zip(L, xk, strict=True)]))

ourd = lat["dream7b"].by_length
pfd = paper["fig4"]["dream"]
md.append("### Figure 4 (Dream-7B, T = 128, s per generation; SparseD's fastest kernel where FA4 was measured)\n\n"
          + tb.markdown_table(
              ["context", "paper dense (A800)", "paper SparseD", f"ours fastest dense ({lat['dream7b'].device})",
               "ours SparseD Flex", "ours SparseD FA4", "ours speed-up (best)", "paper speed-up"],
              [[f"{n // 1024}k", pfd["dense"].get(f"{n // 1024}k", "-"), pfd["sparsed"].get(f"{n // 1024}k", "-"),
                ourd[n]["fastest_dense"], ourd[n]["sparsed"], ourd[n].get("sparsed_fa4", "-"),
                round(ourd[n]["fastest_dense"] / min(ourd[n]["sparsed"], ourd[n].get("sparsed_fa4", 1e9)), 2),
                round(pfd["dense"][f"{n // 1024}k"] / pfd["sparsed"][f"{n // 1024}k"], 2)] for n in sorted(ourd)]))

# %%
(nb.out / "tables.md").write_text("\n\n".join(md) + "\n")
nb.figures.append("tables.md")
nb.report(
    ruler_card_avg={L_: {r: card.average(L_, r, card.common_tasks(L_)) for r in card.scores[L_]} for L_ in card.scores},
    ruler_cache_avg_2k={r: caches.average("2048", r, ctasks) for r in caches.scores["2048"]}, cache_tasks=ctasks,
    ablation_latency_h200=abl, speedup_by_length_h200=dict(zip(xk, sp, strict=True)),
    speedup_by_steps_h200={s: {str(t): v["fastest_dense"] / v["sparsed"] for t, v in lat[s].by_steps.items()} for s in lat},
    kernel_speedup_fa4_h100={str(n): v["fa4_sparse"] for n, v in ks.items()},
)
print(nb.finish())
