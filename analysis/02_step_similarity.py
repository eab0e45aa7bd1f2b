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
# # 2. Similarity of attention across denoising steps (the paper's Figure 1 d)
#
# The paper's v1 shows, per head, a step x step "similarity" of the attention maps without defining it;
# its ICLR version compares SparseD's block selection at the step it builds the pattern with the
# selection each later step would make (Jaccard) and reports **> 90 % on average** over heads. Both here:
#
# * **map similarity**: the cosine similarity of a head's flattened block-pooled maps at two steps (maps
#   from the attention recorder; non-negative, so in [0, 1]);
# * **selection similarity**: the Jaccard similarity |A & B| / |A | B| of two block selections (all query
#   blocks' kept key blocks), where every step's selection is built by the SparseD method object itself
#   (`SparseD.build_pattern`, its settings and compat mode, through `sparsed.analysis.pattern_probe`) from
#   that step's q/k of a dense generation. The build step is the one SparseD builds at
#   (`SparseDSettings.schedule`: `int(T*skip)+1` for the released schedule).
#
# This notebook replaces `analysis/pattern_similarity.py`.

# %%
import sys
import tempfile
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "sparsed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sparsed.analysis import similarity as sim  # noqa: E402
from sparsed.analysis.notebook import start  # noqa: E402
from sparsed.analysis.pattern_probe import PatternProbe  # noqa: E402
from sparsed.analysis.record_settings import RecordSettings  # noqa: E402
from sparsed.analysis.workbench import load_bench, record_generation  # noqa: E402
from sparsed.attention import build_method  # noqa: E402

nb = start("step_similarity")
P = nb.params
bench = load_bench(nb.model)
facts = bench.model.args.facts
print(bench.name, P)

# %%
sample = bench.ruler(P["task"], P["length"], 1, P["gen_length"], fill="tight")[0]
ids = sample["ids"]
T, L = P["steps"], facts.n_layers
sparsed = build_method("sparsed", {"skip": P["skip"], "select": P["select"], "block_size": P["block"]}, facts=facts)
build, first_sparse = sparsed.schedule(T)
probe = PatternProbe(build_method("dense", {}, facts=facts), sparsed)
settings = RecordSettings(attention=True, block_size=P["block"], dtype="float32", max_gib=4.0)
with tempfile.TemporaryDirectory() as tmp:
    record, tokens = record_generation(bench, ids, bench.gen(T, P["gen_length"]), settings,
                                       Path(tmp) / "attention_record.safetensors", method=probe)
answer = bench.tokenizer.decode(tokens, skip_special_tokens=True)
print(f"prompt {ids.shape[1]} tokens; answer {answer!r}, gold {sample['outputs']}; SparseD builds at step {build}")

# %% [markdown]
# ## Selection similarity with the build step, over every layer and head

# %%
jv = sim.jaccard_vs_build(probe.grids, build, T, L)  # [later steps, layers, heads]
per_head = jv.mean(0)  # [layers, heads]
later = np.arange(build + 1, T)
cos = {la: np.stack([sim.step_cosine(record.stack(la)[:, h]) for h in range(facts.n_heads)]) for la in range(L)}
cos_vs_build = np.array([[cos[la][h, build, build + 1:].mean() for h in range(facts.n_heads)] for la in range(L)])
mean_j = float(jv.mean())
print(f"mean Jaccard(selection at step {build}, selection at steps {build + 1}..{T - 1}) = {mean_j:.3f}; "
      f"lowest head {per_head.min():.3f}; heads >= 0.9: {(per_head >= 0.9).mean():.0%}; "
      f"mean map cosine vs build step {cos_vs_build.mean():.3f}")

fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
axes[0].hist(per_head.ravel(), bins=20, range=(min(0.5, per_head.min()), 1), color="C0")
axes[0].axvline(0.9, color="k", ls="--", lw=1, label="0.9 (ICLR version: > 90 % on average)")
axes[0].set_xlabel(f"mean Jaccard with step {build}'s selection (steps {build + 1}..{T - 1})")
axes[0].set_ylabel("heads")
axes[0].set_title(f"{L * facts.n_heads} heads: mean {mean_j:.3f}, min {per_head.min():.3f}")
axes[0].legend(fontsize=8)
axes[1].boxplot([per_head[la] for la in range(L)], positions=range(L))
axes[1].set_xlabel("layer")
axes[1].set_ylabel("mean Jaccard per head")
axes[1].set_title("distribution over heads, per layer")
axes[2].plot(later, jv.mean((1, 2)), label="mean over heads")
axes[2].plot(later, jv.min((1, 2)), label="least similar head")
axes[2].plot(later, np.array([[cos[la][h, build, t] for la in range(L) for h in range(facts.n_heads)]
                              for t in later]).mean(1), label="map cosine, mean over heads")
axes[2].set_xlabel("step")
axes[2].set_ylabel("similarity with the build step")
axes[2].set_ylim(0, 1.02)
axes[2].legend(fontsize=8)
axes[2].set_title(f"SparseD select {P['select']}, block {P['block']}, skip {P['skip']}")
fig.suptitle(f"{bench.cfg.model.name}: step similarity ({ids.shape[1]}-token prompt, T = {T})")
fig.tight_layout()
nb.save(fig, "step_similarity_distribution")
plt.show()

# %% [markdown]
# ## Step x step similarity of three heads: the most, the median and the least stable (by Jaccard)

# %%
order = np.argsort(per_head, axis=None)
picks = [np.unravel_index(order[i], per_head.shape) for i in (-1, len(order) // 2, 0)]
fig, axes = plt.subplots(len(picks), 4, figsize=(16, 3.9 * len(picks)), layout="constrained")
for r, (la, h) in enumerate(picks):
    jm = sim.jaccard_matrix(probe.grids, la, h, T)
    for c, (mat, label) in enumerate(((cos[la][h], "map cosine"), (jm, "selection Jaccard"))):
        im = axes[r, c].imshow(mat, vmin=0, vmax=1, cmap="viridis")
        axes[r, c].set_title(f"layer {la} head {h}: {label} (min {mat.min():.2f})", fontsize=9)
        axes[r, c].set_xlabel("step")
        axes[r, c].set_ylabel("step")
    for c, t in ((2, build), (3, T - 1)):
        axes[r, c].imshow(probe.grids[(t, la)][0, h].float(), cmap="Blues", interpolation="nearest")
        axes[r, c].set_title(f"layer {la} head {h}: selected key blocks, step {t}", fontsize=9)
        axes[r, c].set_xlabel("key block")
        axes[r, c].set_ylabel("query block")
fig.colorbar(im, ax=axes[:, 1], shrink=0.6)
fig.suptitle("the most, the median and the least stable head (mean Jaccard with the build step)")
nb.save(fig, "step_similarity_heads")
plt.show()

# %%
nb.report(
    model=bench.name, prompt_tokens=int(ids.shape[1]), answer=answer, gold=list(sample["outputs"]),
    build_step=int(build), first_sparse_step=int(first_sparse),
    mean_jaccard_vs_build=mean_j, min_head_mean_jaccard=float(per_head.min()),
    fraction_heads_jaccard_ge_0_9=float((per_head >= 0.9).mean()),
    jaccard_per_layer=per_head.mean(1).tolist(), jaccard_per_later_step=jv.mean((1, 2)).tolist(),
    jaccard_step0_vs_build=float(sim.jaccard_vs_build(probe.grids, 0, build + 1, L)[-1].mean()) if build > 0 else 1.0,
    mean_map_cosine_vs_build=float(cos_vs_build.mean()), min_head_map_cosine_vs_build=float(cos_vs_build.min()),
    per_layer_head_jaccard=per_head.tolist(),
)
print(nb.finish())
