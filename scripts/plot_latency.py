"""Figures 4 and 5 and the latency table from ``scripts/bench_latency.py`` results, beside the paper's bars.

    python scripts/plot_latency.py results/latency/h200_llada8b.json results/latency/h200_dream7b.json \
        --validation results/latency/h200_llada8b_validation_4k.json --out results/latency

Writes ``figure4.png`` (end-to-end latency against length, T = 128, per method and model shape),
``figure5.png`` (64k, T = 64 ... 1024), and ``h200.md`` (every number, ratios against the fastest dense
kernel measured in the same run, the paper's A800 numbers beside them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Figure 4 of the paper (A800, seconds, bar labels; ../shared/papers/sparsed.md 11.3): FlashAttention (FA2),
# StreamingLLM, SparseD per length
PAPER_FIG4 = {
    "llada8b": {4096: (38, 43, 41), 8192: (94, 95, 95), 16384: (245, 232, 230), 32768: (690, 599, 596),
                65536: (2127, 1693, 1695)},
    "dream7b": {4096: (33, 37, 36), 8192: (81, 83, 84), 16384: (207, 197, 195), 32768: (563, 492, 496),
                65536: (1699, 1342, 1371)},
}
PAPER_FIG5_SPEEDUP = {"llada8b": {128: 1.25, 1024: 1.48}, "dream7b": {128: 1.23, 1024: 1.50}}
METHODS = [("dense_cudnn", "dense, cuDNN SDPA"), ("dense_flash", "dense, FA2 (SDPA)"), ("sparsed", "SparseD (Flex)"),
           ("streaming_llm", "StreamingLLM (Flex)"), ("prefix_dense", "Fast-dLLM prefix cache"),
           ("prefix_losa", "prefix + LoSA (b256)"), ("prefix_quest", "prefix + Quest (b256)"),
           ("prefix_sparsed_cache", "prefix + SparseD on cache")]


def load(paths: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {"composed": {}, "fig5": {}, "results": {}, "device": None, "versions": None, "commands": []}
    for p in paths:
        d = json.loads(Path(p).read_text())
        for key in ("composed", "fig5", "results"):
            for shape, v in d.get(key, {}).items():
                merged[key].setdefault(shape, {}).update(v)
        merged["device"] = merged["device"] or d.get("device")
        merged["versions"] = merged["versions"] or d.get("versions")
        merged["commands"].append(d.get("command"))
    return merged


def plot(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted(data["composed"])
    fig, axes = plt.subplots(1, len(shapes), figsize=(7 * len(shapes), 4.6), squeeze=False)
    for ax, shape in zip(axes[0], shapes, strict=True):
        comp = data["composed"][shape]
        lengths = sorted(int(L) for L in comp)
        for key, label in METHODS:
            ys = [comp[str(L)].get(key) for L in lengths]
            if any(y is not None for y in ys):
                ax.plot(lengths, ys, marker="o", label=label)
        paper = PAPER_FIG4.get(shape, {})
        ax.plot(sorted(paper), [paper[L][0] for L in sorted(paper)], "k--", alpha=0.5, label="paper: FA2 (A800)")
        ax.plot(sorted(paper), [paper[L][2] for L in sorted(paper)], "k:", alpha=0.5, label="paper: SparseD (A800)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("end-to-end latency, T = 128, gen 128 (s)")
        ax.set_title(f"{shape} shape, H200 (composed from measured steps)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "figure4.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(data["fig5"]) or 1, figsize=(7 * max(1, len(data["fig5"])), 4.2), squeeze=False)
    for ax, (shape, by_t) in zip(axes[0], sorted(data["fig5"].items()), strict=False):
        ts = sorted(int(t) for t in by_t)
        width = 0.38
        xs = range(len(ts))
        dense = [by_t[str(t)]["fastest_dense"] / 60 for t in ts]
        sparse = [by_t[str(t)]["sparsed"] / 60 for t in ts]
        ax.bar([x - width / 2 for x in xs], dense, width, label="fastest dense (cuDNN)")
        ax.bar([x + width / 2 for x in xs], sparse, width, label="SparseD (Flex)")
        for x, d, s in zip(xs, dense, sparse, strict=True):
            ax.text(x + width / 2, s, f"{d / s:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [str(t) for t in ts])
        ax.set_xlabel("diffusion steps T (64k context)")
        ax.set_ylabel("minutes")
        ax.set_title(f"{shape} shape, H200; paper: {PAPER_FIG5_SPEEDUP.get(shape)} speed-up vs FA2 at T=128/1024")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "figure5.png", dpi=110)
    plt.close(fig)


def table(data: dict[str, Any], validation: dict[str, Any] | None) -> str:
    lines = ["# End-to-end latency at 8B shapes, one H200 (composed from measured steps)", "",
             f"Device: {data['device']}; versions: {data['versions']}.", "",
             "Commands (one device call each):", ""] + [f"    {c}" for c in data["commands"] if c] + [""]
    lines += ["Each step kind is timed with CUDA events after warm-up (median of 3 repeats up to 16k, 2 beyond); a "
              "generation of T = 128 steps, 128 generated tokens in 4 blocks of 32, is composed from them (see "
              "`scripts/bench_latency.py`). Ratios are against the fastest dense kernel of the same run (cuDNN SDPA; "
              "FA3/FA4 were not importable on this image); the paper's are against FA2 on an A800.", ""]
    for shape, comp in sorted(data["composed"].items()):
        lines += [f"## {shape}", "", "| length | " + " | ".join(label for _, label in METHODS) + " | SparseD / fastest dense "
                  "| paper SparseD vs FA2 |", "|---" * (len(METHODS) + 3) + "|"]
        for L in sorted(comp, key=int):
            c = comp[L]
            paper = PAPER_FIG4.get(shape, {}).get(int(L))
            cells = [f"{c[k]:.1f}" if c.get(k) is not None else "-" for k, _ in METHODS]
            lines.append(f"| {int(L) // 1024}k | " + " | ".join(cells) + f" | **{c['fastest_dense'] / c['sparsed']:.2f}x** | "
                         + ("-" if not paper else f"{paper[0] / paper[2]:.2f}x") + " |")
        lines.append("")
        res = data["results"][shape]
        lines += ["Per-step times (s): dense cuDNN / FA2 step, SparseD build step (dense + pattern) and sparse step, "
                  "StreamingLLM step, prefix-cache refresh and cached step (first block), KV density of the cached "
                  "methods.", "", "| length | cuDNN | FA2 | build | sparse | pattern cost | streaming | refresh | cached dense "
                  "| cached LoSA | cached Quest | cached SparseD-cache | LoSA KV density | Quest KV density | peak GiB (dense) |",
                  "|---" * 15 + "|"]
        for L in sorted(res, key=int):
            r = res[L]

            def s(key: str, r=r) -> str:
                v = r.get(key)
                return "-" if not isinstance(v, dict) else f"{v['median_s']:.3f}"

            def cached(key: str, r=r) -> str:
                v = r.get(key)
                return "-" if not v else f"{v['blocks'][0]['cached']['median_s']:.4f}"

            pattern = (r["sparsed_build_step"]["median_s"] - r["dense_cudnn"]["median_s"]) if "dense_cudnn" in r else None
            kv = lambda k, r=r: "-" if not r.get(k) or r[k].get("kv_density") is None else f"{100 * r[k]['kv_density']:.1f} %"  # noqa: E731
            lines.append(f"| {int(L) // 1024}k | {s('dense_cudnn')} | {s('dense_flash')} | {s('sparsed_build_step')} | "
                         f"{s('sparsed_sparse_step')} | {'-' if pattern is None else f'{pattern:.2f}'} | {s('streaming_step')} | "
                         f"{'-' if not r.get('prefix_dense') else r['prefix_dense']['blocks'][0]['refresh']['median_s']:.3} | "
                         f"{cached('prefix_dense')} | {cached('prefix_losa')} | {cached('prefix_quest')} | "
                         f"{cached('prefix_sparsed_cache')} | {kv('prefix_losa')} | {kv('prefix_quest')} | "
                         f"{r.get('dense_cudnn', {}).get('peak_gib', '-')} |")
        lines.append("")
        if shape in data["fig5"]:
            lines += ["Figure 5 (64k, composed): T -> fastest dense / SparseD seconds (speed-up): "
                      + "; ".join(f"T={t}: {v['fastest_dense']:.0f} / {v['sparsed']:.0f} "
                                  f"({v['fastest_dense'] / v['sparsed']:.2f}x)" for t, v in sorted(data["fig5"][shape].items(),
                                                                                              key=lambda kv: int(kv[0]))), ""]
    if validation:
        lines += ["## Composition check (complete generations at 4k, LLaDA-8B shape, T = 128)", ""]
        comp4k = data["composed"].get("llada8b", {}).get("4096", {})
        for key, v in validation.get("validation", {}).get("llada8b", {}).items():
            c = comp4k.get(key)
            err = "-" if not c else f"{100 * (v['measured_s'] / c - 1):+.1f} %"
            lines.append(f"- {key}: measured {v['measured_s']:.2f} s, composed {c} s, measured/composed - 1 = {err}")
        lines += ["", "The complete runs had no warm-up generation before them, so they include one-time costs the "
                  "step timings exclude (allocator growth, cuDNN plan selection, FlexAttention compilation for SparseD: "
                  "its first sparse step alone took 13 s at 64k in the step benchmark); the sampler's own work (LM "
                  "head over the block, confidences, commits) is in them too.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--validation", default=None)
    ap.add_argument("--out", default="results/latency")
    args = ap.parse_args()
    data = load(args.results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(data, out)
    validation = json.loads(Path(args.validation).read_text()) if args.validation else None
    (out / "h200.md").write_text(table(data, validation))
    print((out / "h200.md").read_text())


if __name__ == "__main__":
    main()
