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
# # 1. Head-specific attention patterns (the paper's Figure 1 a-c, Figures 7 and 8)
#
# The paper shows, for a few heads of LLaDA-1.5 (and LLaDA-8B-Base, Dream-7B), the attention map at
# steps 1, 15 and 30 of a 32-step generation, with a red line between prompt and generation keys: some
# heads are column-like ("vertical"), some sliding-window-like, some mixed. It does not say which layers
# and heads it shows. Here the heads are **chosen by a stated statistic** over every head of the model,
# computed on block-pooled maps (`sparsed.analysis.head_stats`):
#
# * **locality**: the attention mass a query block puts on key blocks at most one block away;
# * **verticality**: the mass on the 10 % of key blocks that get the most attention over all queries;
# * the **column** head maximises verticality - locality, the **window** head locality - verticality, the
#   **mixed** head |locality of prompt queries - locality of generation queries|.
#
# "How much heads differ" (the head variance): per layer, the Jensen-Shannon divergence between the
# block-pooled maps of every pair of heads at the same step, beside the divergence of a head's map with
# itself across steps (JS in nats, at most ln 2 = 0.69).
#
# The run: dense attention (the model's own maps, as in the paper), one RULER sample of the evaluation
# seed, one block of T steps; the attention recorder (`sparsed.analysis.recorder`, the same one
# `run.py record.attention=true` switches on) keeps the block-pooled maps of every head at every step and
# the full maps at the shown steps.

# %%
import sys
import tempfile
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "sparsed" / "__init__.py").is_file())
sys.path.insert(0, str(ROOT))

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from sparsed.analysis import head_stats as hs  # noqa: E402
from sparsed.analysis.notebook import start  # noqa: E402
from sparsed.analysis.record_settings import RecordSettings  # noqa: E402
from sparsed.analysis.workbench import load_bench, record_generation  # noqa: E402

nb = start("head_patterns")
P = nb.params
bench = load_bench(nb.model)
facts = bench.model.args.facts
print(bench.name, P)

# %%
sample = bench.ruler(P["task"], P["length"], 1, P["gen_length"], fill="tight")[0]
ids = sample["ids"]
prompt_len = ids.shape[1]
canvas = prompt_len + P["gen_length"]
pairs = [[la, h] for la in range(facts.n_layers) for h in range(facts.n_heads)]
settings = RecordSettings(attention=True, block_size=P["block"], full_maps=pairs, full_steps=P["show"],
                          full_max_tokens=canvas, dtype="float32", max_gib=4.0)
with tempfile.TemporaryDirectory() as tmp:
    record, tokens = record_generation(bench, ids, bench.gen(P["steps"], P["gen_length"]), settings,
                                       Path(tmp) / "attention_record.safetensors")
answer = bench.tokenizer.decode(tokens, skip_special_tokens=True)
print(f"prompt {prompt_len} tokens, canvas {canvas}; answer {answer!r}, gold {sample['outputs']}")

# %% [markdown]
# ## Statistics of every head, and the chosen heads

# %%
maps = {la: record.stack(la) for la in record.layers}  # layer -> [steps, H, nq, nk]
prompt_blocks = prompt_len // P["block"]  # query blocks wholly inside the prompt
stats = hs.head_stats(maps, prompt_blocks)
chosen = stats.choose()
for kind, (la, h) in chosen.items():
    print(f"{kind:6s} head: layer {la} head {h}  locality {stats.locality[la, h]:.3f}  "
          f"verticality {stats.verticality[la, h]:.3f}  mixedness {stats.mixedness[la, h]:.3f}")

# %%
show = P["show"]
fig, axes = plt.subplots(len(chosen), len(show), figsize=(3.6 * len(show), 3.4 * len(chosen)), squeeze=False)
for r, (kind, (la, h)) in enumerate(chosen.items()):
    for c, step in enumerate(show):
        a = record.full(step, la, h)[0]
        ax = axes[r, c]
        im = ax.imshow(np.clip(a, 1e-5, 1), norm=LogNorm(vmin=1e-5, vmax=1), cmap="viridis", interpolation="nearest")
        ax.axvline(prompt_len - 0.5, color="red", lw=1)
        ax.axhline(prompt_len - 0.5, color="red", lw=0.6, ls="--")
        ax.set_title(f"{kind}: layer {la} head {h}, step {step}", fontsize=9)
        ax.set_xlabel("key")
        if c == 0:
            ax.set_ylabel("query")
fig.colorbar(im, ax=axes, shrink=0.6, label="attention probability (log)")
fig.suptitle(f"{bench.cfg.model.name}: attention maps at steps {show} of {P['steps']} "
             f"(red: prompt | generation, {prompt_len} + {P['gen_length']} tokens)")
nb.save(fig, "head_patterns")
plt.show()

# %% [markdown]
# ## Head variance: how much heads differ within a layer, against how much a head changes across steps

# %%
between = np.array([hs.between_heads(maps[la]) for la in record.layers])
within = np.array([hs.within_heads(maps[la]) for la in record.layers])
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
layer_of = np.repeat(np.arange(len(record.layers)), facts.n_heads)
sc = ax0.scatter(stats.locality.ravel(), stats.verticality.ravel(), c=layer_of, cmap="viridis", s=22)
for kind, (la, h) in chosen.items():
    right = stats.locality[la, h] > 0.7  # labels near the right edge go to the left of their point
    ax0.annotate(f"{kind} L{la}H{h}", (stats.locality[la, h], stats.verticality[la, h]), fontsize=8,
                 xytext=(-4 if right else 4, 4), textcoords="offset points", ha="right" if right else "left")
ax0.set_xlabel("locality (mass within one block of the diagonal)")
ax0.set_ylabel("verticality (mass on the top 10 % key blocks)")
ax0.set_title(f"every head ({facts.n_layers} layers x {facts.n_heads}), block {P['block']}")
fig.colorbar(sc, ax=ax0, label="layer")
x = np.arange(len(record.layers))
ax1.bar(x - 0.2, between, 0.4, label="between heads (same step)")
ax1.bar(x + 0.2, within, 0.4, label="within a head (across steps)")
ax1.set_xticks(x)
ax1.set_xlabel("layer")
ax1.set_ylabel("Jensen-Shannon divergence (nats)")
ax1.set_title("head variance per layer")
ax1.legend()
fig.tight_layout()
nb.save(fig, "head_variance")
plt.show()
print("JS between heads per layer:", np.round(between, 3))
print("JS within a head across steps per layer:", np.round(within, 3))

# %%
nb.report(
    model=bench.name, prompt_tokens=int(prompt_len), answer=answer, gold=list(sample["outputs"]),
    chosen={k: {"layer": la, "head": h, "locality": float(stats.locality[la, h]),
                "verticality": float(stats.verticality[la, h]), "mixedness": float(stats.mixedness[la, h])}
            for k, (la, h) in chosen.items()},
    locality=stats.locality.tolist(), verticality=stats.verticality.tolist(),
    js_between_heads_per_layer=between.tolist(), js_within_head_per_layer=within.tolist(),
    js_between_heads_mean=float(between.mean()), js_within_head_mean=float(within.mean()),
    between_over_within=float(between.mean() / within.mean()),
    locality_range=[float(stats.locality.min()), float(stats.locality.max())],
    verticality_range=[float(stats.verticality.min()), float(stats.verticality.max())],
)
print(nb.finish())
