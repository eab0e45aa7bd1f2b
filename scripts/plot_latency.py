"""Figures 4 and 5 and the latency table from ``scripts/bench_latency.py`` results, beside the paper's bars.

    python scripts/plot_latency.py results/latency/h200_llada8b.json results/latency/h200_dream7b.json \
        results/latency/h200_dream7b_4k32k.json results/latency/h200_llada8b_4k_fa4_validation.json \
        --validation results/latency/h200_llada8b_4k_fa4_validation.json --out results/latency

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
FIG5_LENGTH = 65536
PAPER_FIG5_SPEEDUP = {"llada8b": {128: 1.25, 1024: 1.48}, "dream7b": {128: 1.23, 1024: 1.50}}
METHODS = [("dense_cudnn", "dense, cuDNN SDPA"), ("dense_flash", "dense, FA2 (SDPA)"), ("dense_fa4", "dense, FA4"),
           ("sparsed", "SparseD (Flex)"), ("sparsed_fa4", "SparseD (FA4 block-sparse)"),
           ("streaming_llm", "StreamingLLM (Flex)"), ("prefix_dense", "Fast-dLLM prefix cache"),
           ("prefix_losa", "prefix + LoSA (b256)"), ("prefix_quest", "prefix + Quest (b256)"),
           ("prefix_sparsed_cache", "prefix + SparseD on cache")]


def load(paths: list[str]) -> dict[str, Any]:
    """Results of several runs; a later file's (shape, length) replaces an earlier one's, so every row of the
    tables comes from one run (``source`` names it) and its ratios compare kernels measured side by side."""
    merged: dict[str, Any] = {"composed": {}, "fig5": {}, "results": {}, "source": {}, "device": None,
                              "versions": None, "commands": []}
    for p in paths:
        d = json.loads(Path(p).read_text())
        for key in ("composed", "results"):
            for shape, v in d.get(key, {}).items():
                merged[key].setdefault(shape, {}).update(v)
        for shape, v in d.get("fig5", {}).items():  # Figure 5 is the paper's 64k sweep: only runs that reached 64k
            if str(FIG5_LENGTH) in d.get("composed", {}).get(shape, {}):
                merged["fig5"][shape] = v
        for shape, v in d.get("composed", {}).items():
            merged["source"].setdefault(shape, {}).update({L: Path(p).name for L in v})
        merged["device"] = merged["device"] or d.get("device")
        merged["versions"] = merged["versions"] or d.get("versions")
        merged["commands"].append(d.get("command"))
    return merged


def save_png(fig, path: Path) -> None:  # noqa: ANN001 - a matplotlib Figure
    """A 64-colour palette PNG: a quarter of the RGB file's size for line plots (the repository is size-capped)."""
    fig.savefig(path, dpi=110)
    try:
        from PIL import Image
    except ImportError:
        return
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)


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
    save_png(fig, out / "figure4.png")
    plt.close(fig)
    fig, axes = plt.subplots(1, len(data["fig5"]) or 1, figsize=(7 * max(1, len(data["fig5"])), 4.2), squeeze=False)
    for ax, (shape, by_t) in zip(axes[0], sorted(data["fig5"].items()), strict=False):
        ts = sorted(int(t) for t in by_t)
        width = 0.38
        xs = range(len(ts))
        dense = [by_t[str(t)]["fastest_dense"] / 60 for t in ts]
        best = {t: best_sparsed(by_t[str(t)]) for t in ts}
        sparse = [best[t][1] / 60 for t in ts]
        kernel = fastest_dense_name(by_t[str(ts[0])])
        ax.bar([x - width / 2 for x in xs], dense, width, label=f"fastest dense ({kernel})")
        ax.bar([x + width / 2 for x in xs], sparse, width, label=dict(METHODS)[best[ts[0]][0]])
        for x, d, s in zip(xs, dense, sparse, strict=True):
            ax.text(x + width / 2, s, f"{d / s:.2f}x", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [str(t) for t in ts])
        ax.set_xlabel("diffusion steps T (64k context)")
        ax.set_ylabel("minutes")
        paper = PAPER_FIG5_SPEEDUP.get(shape, {})
        ax.set_title(f"{shape} shape, H200, 64k\npaper (A800, vs FA2): "
                     + ", ".join(f"{v:.2f}x at T = {t}" for t, v in sorted(paper.items())), fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, out / "figure5.png")
    plt.close(fig)


def length_label(L: int | str) -> str:
    n = int(L)
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def fastest_dense_name(c: dict[str, float]) -> str:
    keys = [k for k in c if k.startswith("dense_")]
    return dict(METHODS).get(min(keys, key=lambda k: c[k]), "?").replace("dense, ", "")


def pattern_cost(r: dict[str, Any]) -> float | None:
    """The pattern's own cost (s): SparseD's build step minus a dense step of the same kernel (cuDNN)."""
    if "sparsed_build_step" not in r or "dense_cudnn" not in r:
        return None
    return r["sparsed_build_step"]["median_s"] - r["dense_cudnn"]["median_s"]


def sparse_density(r: dict[str, Any]) -> str:
    """SparseD's attention density over its sparse steps. Older runs stored the mean over the timed build
    and sparse calls together (as many of each, same length, the build's dense calls counting 1): undone."""
    if "sparsed_sparse_density" in r:
        return f"{r['sparsed_sparse_density']:.3f}"
    if "sparsed_density" in r:
        return f"{2 * r['sparsed_density'] - 1:.3f}"
    return "-"


def best_sparsed(c: dict[str, float]) -> tuple[str, float]:
    """SparseD's fastest kernel in one composed row: (key, seconds); its variants are ``sparsed[_<kernel>]``."""
    return min(((k, v) for k, v in c.items() if (k == "sparsed" or k.startswith("sparsed_")) and v),
               key=lambda kv: kv[1])


def needed_sparse_step(r: dict[str, Any], steps: int, target: float, skip: float = 0.2) -> float:
    """The sparse step time (s) at which SparseD's composed generation reaches ``target`` x the fastest dense."""
    dense = min(v["median_s"] for k, v in r.items() if k.startswith("dense_") and isinstance(v, dict))
    n_dense = int(steps * skip) + 1
    budget = steps * dense / target - n_dense * r["dense_cudnn"]["median_s"] - r["sparsed_build_step"]["median_s"]
    return budget / (steps - n_dense - 1)


def targets(data: dict[str, Any]) -> list[str]:
    """The issue's targets, each measured value a ratio within one run, with what a miss would have needed."""
    lines = ["## Targets", "", "| what | shape | measured | target | |", "|---|---|---|---|---|"]
    top = str(FIG5_LENGTH)
    for shape in sorted(data["composed"]):
        comp, res, f5 = data["composed"][shape], data["results"][shape], data["fig5"].get(shape, {})
        rows = []
        for T, target, what in ((128, 1.5, "end to end, 64k, T = 128"), (1024, 1.6, "end to end, 64k, T = 1024")):
            c = f5.get(str(T))
            if c and top in res:
                got = c["fastest_dense"] / best_sparsed(c)[1]
                need = needed_sparse_step(res[top], T, target)
                rows.append((what, f"{got:.2f}x", f">= {target}x", got >= target,
                             f"needs a sparse step <= {need:.2f} s (measured {res[top]['sparsed_sparse_step']['median_s']:.2f}"
                             f" s, dense {res[top]['dense_cudnn']['median_s']:.2f} s)"))
        short = [(L, comp[L]["fastest_dense"] / best_sparsed(comp[L])[1], best_sparsed(comp[L])[0])
                 for L in ("4096", "8192") if L in comp]
        if short:
            worst = min(short, key=lambda x: x[1])
            rows.append(("end to end, 4k and 8k", "; ".join(f"{length_label(L)} {v:.2f}x ({k})" for L, v, k in short),
                         ">= 1.0x", worst[1] >= 1.0, "SparseD's fastest kernel in each run"))
        if top in res:
            build = pattern_cost(res[top])
            if build is not None:
                rows.append(("pattern build, 64k, all layers", f"{build:.2f} s", "<= 3 s", build <= 3.0,
                             "build step minus a dense step"))
        if top in comp and comp[top].get("prefix_sparsed_cache"):
            got = comp[top]["fastest_dense"] / comp[top]["prefix_sparsed_cache"]
            rows.append(("prefix cache + SparseD on the cache, 64k, vs dense without a cache", f"{got:.2f}x", ">= 8x",
                         got >= 8, f"prefix cache alone {comp[top]['fastest_dense'] / comp[top]['prefix_dense']:.1f}x"))
        for what, got, target, ok, why in rows:
            lines.append(f"| {what} | {shape} | {got} | {target} | {'met' if ok else 'missed'}: {why} |")
    return lines + [""]


def table(data: dict[str, Any], validation: dict[str, Any] | None) -> str:
    lines = ["# End-to-end latency at 8B shapes, one H200 (composed from measured steps)", "",
             f"Device: {data['device']}; versions: {data['versions']}.", "",
             "Commands (one device call each):", ""] + [f"    {c}" for c in data["commands"] if c] + [""]
    lines += ["Each step kind is timed with CUDA events after warm-up (median of 3 repeats up to 16k, 2 beyond); a "
              "generation of T = 128 steps, 128 generated tokens in 4 blocks of 32, is composed from them (see "
              "`scripts/bench_latency.py`). Ratios are against the fastest dense kernel of the same run (the `run` column "
              "names it; FA4 is FlashAttention-4 4.0.0b36 from `../shared/gpu/prepare_fa4.sh`, in the runs whose rows "
              "have an FA4 column; the others had only cuDNN and FA2 through SDPA); the paper's are against FA2 on an "
              "A800.", ""]
    lines += targets(data)
    for shape, comp in sorted(data["composed"].items()):
        lines += [f"## {shape}", "", "End to end, seconds, T = 128:", "",
                  "| length | " + " | ".join(label for _, label in METHODS) + " | fastest dense | SparseD Flex / fastest"
                  " dense | SparseD FA4 / fastest dense | prefix + SparseD-cache / fastest dense | paper SparseD vs FA2 "
                  "| run |", "|---" * (len(METHODS) + 7) + "|"]
        for L in sorted(comp, key=int):
            c = comp[L]
            paper = PAPER_FIG4.get(shape, {}).get(int(L))
            cells = [f"{c[k]:.1f}" if c.get(k) is not None else "-" for k, _ in METHODS]
            ratio = lambda k, c=c: "-" if not c.get(k) else f"**{c['fastest_dense'] / c[k]:.2f}x**"  # noqa: E731
            lines.append(f"| {length_label(L)} | " + " | ".join(cells) + f" | {fastest_dense_name(c)} | {ratio('sparsed')} "
                         f"| {ratio('sparsed_fa4')} | {ratio('prefix_sparsed_cache')} | "
                         + ("-" if not paper else f"{paper[0] / paper[2]:.2f}x")
                         + f" | `{data['source'].get(shape, {}).get(L, '?')}` |")
        lines.append("")
        res = data["results"][shape]
        lines += ["Per-step times (s): dense cuDNN / FA2 step, SparseD build step (dense + pattern) and sparse step, "
                  "StreamingLLM step, prefix-cache refresh and cached step (first block), KV density of the cached "
                  "methods.", "", "| length | cuDNN | FA2 | build | sparse | pattern cost | streaming | refresh | cached dense "
                  "| cached LoSA | cached Quest | cached SparseD-cache | LoSA KV density | Quest KV density | peak GiB (dense) |"
                  " FA4 | FA4 build | FA4 sparse | SparseD density (sparse steps) |", "|---" * 19 + "|"]
        for L in sorted(res, key=int):
            r = res[L]

            def s(key: str, r=r) -> str:
                v = r.get(key)
                return "-" if not isinstance(v, dict) else f"{v['median_s']:.3f}"

            def cached(key: str, r=r) -> str:
                v = r.get(key)
                return "-" if not v else f"{v['blocks'][0]['cached']['median_s']:.4f}"

            pattern = pattern_cost(r)
            kv = lambda k, r=r: "-" if not r.get(k) or r[k].get("kv_density") is None else f"{100 * r[k]['kv_density']:.1f} %"  # noqa: E731
            lines.append(f"| {length_label(L)} | {s('dense_cudnn')} | {s('dense_flash')} | {s('sparsed_build_step')} | "
                         f"{s('sparsed_sparse_step')} | {'-' if pattern is None else f'{pattern:.2f}'} | {s('streaming_step')} | "
                         f"{'-' if not r.get('prefix_dense') else r['prefix_dense']['blocks'][0]['refresh']['median_s']:.3} | "
                         f"{cached('prefix_dense')} | {cached('prefix_losa')} | {cached('prefix_quest')} | "
                         f"{cached('prefix_sparsed_cache')} | {kv('prefix_losa')} | {kv('prefix_quest')} | "
                         f"{r.get('dense_cudnn', {}).get('peak_gib', '-')} | {s('dense_fa4')} | {s('sparsed_fa4_build_step')} | "
                         f"{s('sparsed_fa4_sparse_step')} | {sparse_density(r)} |")
        lines.append("")
        top = max(res, key=int)
        peaks = {k: v["peak_gib"] for k, v in res[top].items() if isinstance(v, dict) and "peak_gib" in v}
        for k, v in res[top].items():  # the cached methods: the refresh (the largest of their steps)
            if isinstance(v, dict) and "measured" in v:
                first = v["measured"].get("0") or v["measured"].get(0) or {}
                if (first.get("refresh") or {}).get("peak_gib") is not None:
                    peaks[k + "_refresh"] = first["refresh"]["peak_gib"]
        if peaks:
            lines += [f"Peak GPU memory at {length_label(top)} (GiB, `torch.cuda.max_memory_allocated` over each step "
                      "kind; weights included): " + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items()), ""]
        if shape in data["fig5"]:
            lines += ["Figure 5 (64k, composed): T -> fastest dense / SparseD (fastest kernel) seconds (speed-up): "
                      + "; ".join(f"T={t}: {v['fastest_dense']:.0f} / {best_sparsed(v)[1]:.0f} "
                                  f"({v['fastest_dense'] / best_sparsed(v)[1]:.2f}x)"
                                  for t, v in sorted(data["fig5"][shape].items(), key=lambda kv: int(kv[0]))), ""]
    if validation:
        L = next(iter(validation.get("composed", {}).get("llada8b", {})), "4096")
        warm = "--no-validate-warmup" not in (validation.get("command") or "")
        lines += [f"## Composition check (complete generations at {length_label(L)}, LLaDA-8B shape, T = 128)", "",
                  f"    {validation.get('command')}", ""]
        for key, v in validation.get("validation", {}).get("llada8b", {}).items():
            c = v.get("composed_s")
            err = "-" if not c else f"{100 * (v['measured_s'] / c - 1):+.1f} %"
            lines.append(f"- {key}: measured {v['measured_s']:.2f} s, composed {c} s, measured/composed - 1 = {err}")
        lines += ["", ("Each complete generation followed one untimed generation of the same setting (compilation, "
                       "autotuning, cuDNN plan choice and allocator growth excluded, as in the step timings); the steps "
                       "were composed from the same run's step timings. What remains is the sampler's own work (LM head "
                       "over the block, confidences, commits) and step-to-step variation.") if warm else
                  ("The complete runs had no warm-up generation before them, so they include one-time costs the step "
                   "timings exclude (allocator growth, cuDNN plan selection, FlexAttention compilation)."), ""]
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
