"""LoSA's locality observation on a model: how few query rows change much between consecutive steps.

Runs a generation with Fast-dLLM's prefix cache and LoSA recording, per cached step and layer, the mean
squared change of every recomputed row's query since the previous step (what LoSA ranks its active
tokens by), then plots: the change of every row over the steps for a few layers, the share of the
total change carried by the top-k rows, and that share per layer.

    python scripts/plot_locality.py --length 2048 --samples 2 --out results/losa_small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention import build_method  # noqa: E402
from sparsed.cache import build_cache  # noqa: E402
from sparsed.data.ruler import generate as ruler_generate  # noqa: E402
from sparsed.data.ruler import sample_ids  # noqa: E402
from sparsed.models.loading import load_model  # noqa: E402
from sparsed.results import write_json_atomic  # noqa: E402
from sparsed.sampling.llada import generate  # noqa: E402
from sparsed.tokenizer import load_tokenizer  # noqa: E402


def top_share(change: torch.Tensor, k: int) -> float:
    """Share of the total change carried by the k rows that changed most."""
    c = change.flatten().sort(descending=True).values
    total = float(c.sum())
    return float(c[:k].sum()) / total if total > 0 else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sparsed/assets/small-dlm")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--task", default="niah_multikey_3")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--out", default="results/losa_small")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(args.model, device="cpu", dtype="fp32")
    tok = load_tokenizer(args.model)
    samples = ruler_generate(args.task, args.length, tok, args.samples, seed=0, gen_length=args.gen, use_cache=False)
    n_layers = model.args.n_layers
    per_call: list[tuple[int, int, torch.Tensor]] = []  # (step, layer, change [n rows])
    for s in samples:
        ids = torch.tensor([sample_ids(tok, s)])
        losa = build_method("losa", {"budget": 1 << 20, "active": 5}, model.args.facts)
        losa.keep_changes = True
        generate(model, ids, steps=args.gen, gen_length=args.gen, block_length=args.gen, cache=build_cache("prefix"),
                 attention=losa)
        for i, ch in enumerate(losa.changes):  # one entry per (cached step, layer), layers innermost
            per_call.append((1 + i // n_layers, i % n_layers, ch[0]))
    ks = (1, 5, 8, 16)
    shares = {k: [top_share(c, k) for _, _, c in per_call] for k in ks}
    rows = per_call[0][2].numel()
    layer_share5 = {layer: sum(top_share(c, 5) for _, lay, c in per_call if lay == layer)
                    / max(1, sum(1 for _, lay, _ in per_call if lay == layer)) for layer in range(n_layers)}
    summary = {"model": args.model, "task": args.task, "length": args.length, "gen": args.gen, "samples": args.samples,
               "rows_per_step": rows, "mean_top_k_share": {str(k): round(sum(v) / len(v), 4) for k, v in shares.items()},
               "mean_top5_share_per_layer": {str(k): round(v, 4) for k, v in layer_share5.items()},
               "definition": "change = mean over heads and head dims of (q_t - q_{t-1})^2 per recomputed row; share = "
                             "sum of the k largest changes / sum of all, per (step, layer), averaged"}
    write_json_atomic(out / "locality.json", summary)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.3))
    first = [(st, lay, c) for st, lay, c in per_call[: (args.gen - 1) * n_layers]]
    for ax_i, layer in enumerate((0, n_layers // 2)):
        mat = torch.stack([c for _, lay, c in first if lay == layer]).T  # [rows, steps]
        im = axes[ax_i].imshow((mat / mat.amax(0, keepdim=True).clamp(min=1e-12)).numpy(), aspect="auto",
                               cmap="magma", interpolation="nearest")
        axes[ax_i].set_title(f"layer {layer}: query change per row (each step scaled to its max)")
        axes[ax_i].set_xlabel("cached step")
        axes[ax_i].set_ylabel("recomputed row (generation position)")
        fig.colorbar(im, ax=axes[ax_i])
    axes[2].plot(list(layer_share5), list(layer_share5.values()), marker="o", label="top-5 rows")
    for k in ks:
        axes[2].axhline(summary["mean_top_k_share"][str(k)], ls=":", alpha=0.6, label=f"top-{k} (all layers)")
    axes[2].axhline(5 / rows, color="k", ls="--", alpha=0.5, label=f"uniform: 5/{rows}")
    axes[2].set_ylim(0, 1)
    axes[2].set_xlabel("layer")
    axes[2].set_ylabel("share of the step's total query change")
    axes[2].set_title(f"{args.task} at {args.length}, {rows} rows recomputed per step")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "locality.png", dpi=100)
    print(summary)


if __name__ == "__main__":
    main()
