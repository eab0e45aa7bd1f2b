"""Observation 2 of the paper, measured: how similar are a head's block patterns across denoising steps?

Runs one dense generation and, at every step and layer, computes the SparseD block selection that step's
q/k would give (the same code SparseD uses). Reports the Jaccard similarity between the pattern of the
step SparseD builds it at (``int(T*skip)+1``, compat=reference) and the pattern recomputed at every later
step, averaged over layers and heads (the ICLR version reports > 90 % on LLaDA/Dream), and draws a
step x step similarity matrix for a few heads plus block-importance maps (Figure 1 style).

    python analysis/pattern_similarity.py --model sparsed/assets/small-dlm --length 2048 --out results/analysis
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention import build_method  # noqa: E402
from sparsed.attention.base import AttentionMethod  # noqa: E402
from sparsed.attention.dense_kernels import dense_attention  # noqa: E402
from sparsed.attention.selection import SelectionRule, select_blocks  # noqa: E402
from sparsed.data.prompts import make_prompt  # noqa: E402
from sparsed.data.ruler import prompt_ids  # noqa: E402
from sparsed.models.loading import load_model  # noqa: E402
from sparsed.results import write_json_atomic  # noqa: E402
from sparsed.sampling.llada import generate  # noqa: E402
from sparsed.tokenizer import load_tokenizer  # noqa: E402


class PatternRecorder(AttentionMethod):
    """Dense attention that also records, per (step, layer), the SparseD block selection of that step."""

    name = "pattern_recorder"

    def __init__(self, rule: SelectionRule) -> None:
        super().__init__()
        self.rule = rule
        self.grids: dict[tuple[int, int], torch.Tensor] = {}

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see AttentionMethod
        if self.step is not None and self.info is not None:
            self.grids[(self.step, layer)] = select_blocks(q, k, self.info.prompt_length, self.rule)[0].cpu()
        return dense_attention(q, k, v, key_valid)


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-head Jaccard of two [H, nq, nk] bool grids."""
    inter = (a & b).flatten(1).sum(-1).float()
    union = (a | b).flatten(1).sum(-1).float().clamp(min=1)
    return inter / union


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sparsed/assets/small-dlm")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--select", type=float, default=0.3)
    ap.add_argument("--skip", type=float, default=0.2)
    ap.add_argument("--out", default="results/analysis")
    args = ap.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.model, device=dev, dtype="bf16" if dev == "cuda" else "fp32")
    tok = load_tokenizer(args.model)
    prompt = make_prompt("niah", tok, length=args.length, seed=3, gen_length=args.gen_length)
    ids = torch.tensor([prompt_ids(tok, prompt.text, prompt.answer_prefix)])
    # the selection rule SparseD itself would use on this model (importance scale resolved from its facts)
    sparsed = build_method("sparsed", {"skip": args.skip, "select": args.select, "block_size": args.block_size},
                           facts=model.args.facts)
    rec = PatternRecorder(sparsed.rule(model.args.head_dim))
    out = generate(model, ids, steps=args.steps, gen_length=args.gen_length, block_length=args.gen_length, attention=rec)
    answer = tok.decode(out.generated[0], skip_special_tokens=True)
    T, n_layers = args.steps, model.args.n_layers
    build, _ = sparsed.schedule(T)  # SparseD answers where its pattern comes from
    later = list(range(build + 1, T))
    per_step = []
    for t in later:
        sims = torch.stack([jaccard(rec.grids[(build, layer)], rec.grids[(t, layer)]) for layer in range(n_layers)])
        per_step.append(float(sims.mean()))
    per_head = torch.stack([
        torch.stack([jaccard(rec.grids[(build, layer)], rec.grids[(t, layer)]) for t in later]).mean(0)
        for layer in range(n_layers)
    ])  # [layers, heads]
    summary = {
        "model": args.model, "prompt_tokens": int(ids.shape[1]), "answer": answer, "gold": prompt.answers,
        "steps": T, "build_step": build, "block_size": args.block_size, "select": args.select,
        "mean_jaccard_vs_build_step": sum(per_step) / len(per_step),
        "jaccard_per_later_step": dict(zip(later, per_step, strict=True)),
        "min_head_mean_jaccard": float(per_head.min()), "per_layer_head": per_head.tolist(),
    }
    write_json_atomic(out_dir / "pattern_similarity.json", summary)
    plot(rec, n_layers, T, per_head, out_dir)
    print(f"prompt {ids.shape[1]} tokens, answer {answer!r} (gold {prompt.answers})")
    print(f"mean Jaccard(pattern at step {build}, pattern recomputed at steps {build + 1}..{T - 1}) = "
          f"{summary['mean_jaccard_vs_build_step']:.3f}; lowest head {summary['min_head_mean_jaccard']:.3f}")
    print(f"wrote {out_dir / 'pattern_similarity.json'} and {out_dir / 'pattern_similarity.png'}")


def plot(rec: PatternRecorder, n_layers: int, steps: int, per_head: torch.Tensor, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # three heads: the most and least stable, and one in between
    flat = per_head.flatten()
    order = flat.argsort()
    picks = [int(order[-1]), int(order[len(order) // 2]), int(order[0])]
    heads = per_head.shape[1]
    fig, axes = plt.subplots(len(picks), 4, figsize=(15, 3.6 * len(picks)))
    for row, idx in enumerate(picks):
        layer, head = divmod(idx, heads)
        sim = torch.zeros(steps, steps)
        for i in range(steps):
            for j in range(steps):
                sim[i, j] = jaccard(rec.grids[(i, layer)][head : head + 1], rec.grids[(j, layer)][head : head + 1])[0]
        for col, t in enumerate((1, steps // 2, steps - 1)):
            axes[row, col].imshow(rec.grids[(t, layer)][head].float(), cmap="Blues", interpolation="nearest")
            axes[row, col].set_title(f"layer {layer} head {head}: selected blocks, step {t}")
            axes[row, col].set_xlabel("key block")
            axes[row, col].set_ylabel("query block")
        im = axes[row, 3].imshow(sim, vmin=0, vmax=1, cmap="viridis")
        axes[row, 3].set_title(f"Jaccard across steps (mean vs build {float(per_head[layer, head]):.2f})")
        axes[row, 3].set_xlabel("step")
        axes[row, 3].set_ylabel("step")
        fig.colorbar(im, ax=axes[row, 3])
    fig.tight_layout()
    fig.savefig(out_dir / "pattern_similarity.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
