"""Check and time the attention kernels on a GPU, in one call.

For each sequence length: dense SDPA backends (cuDNN, FA2 "flash", mem-efficient), FA3 / FA4 when
importable, and the block-sparse kernels SparseD uses (FlexAttention with a BlockMask built straight from
the block grid; FA4 block-sparse) on a SparseD-shaped pattern (per head, top int(nB*select)+1 key blocks
per query block, chosen by this project's own selection code from structured random q/k). Every kernel is
first compared against a float64 reference on fresh random inputs; timings are CUDA-event medians after
warm-up. Also times the pattern computation itself.

    python scripts/bench_kernels.py --lengths 4096 16384 65536 --out results/kernels_h100.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparsed.attention.estimator_triton import block_mass_triton  # noqa: E402
from sparsed.attention.kernels import (  # noqa: E402
    dense_attention,
    fa3_func,
    fa4_block_sparse,
    fa4_module,
    flex_block_sparse,
    token_mask_from_grid,
)
from sparsed.attention.selection import SelectionRule, block_mass_torch, select_blocks  # noqa: E402
from sparsed.results import device_info, versions, write_json_atomic  # noqa: E402


def cuda_median_ms(fn, warmup: int = 3, iters: int = 10) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def structured_qk(B: int, H: int, L: int, D: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """q/k with topic clusters, so that block importances are not uniform (a realistic selection)."""
    topics = torch.randn(16, D, device="cuda", generator=gen)
    assign = torch.randint(0, 16, (B, H, L), device="cuda", generator=gen)
    q = topics[assign] * 0.6 + torch.randn(B, H, L, D, device="cuda", generator=gen)
    k = topics[torch.roll(assign, 7, dims=-1)] * 0.6 + torch.randn(B, H, L, D, device="cuda", generator=gen)
    return q.bfloat16(), k.bfloat16()


def dense_backends() -> list[str]:
    return ["cudnn", "flash", "efficient"] + (["fa3"] if fa3_func() else []) + (["fa4"] if fa4_module() else [])


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def reference64(q, k, v, mask=None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)


def check(length: int, block: int, select: float, gen: torch.Generator) -> list[dict]:
    """Correctness of every kernel against float64 on fresh inputs (poisoned outputs would show as NaN)."""
    B, H, D = 1, 8, 128
    q, k = structured_qk(B, H, length, D, gen)
    v = torch.randn(B, H, length, D, device="cuda", generator=gen).bfloat16()
    rows = []
    ref = reference64(q, k, v)
    for backend in dense_backends():
        try:
            out = dense_attention(q, k, v, None, backend=backend)
            rows.append({"check": "dense", "kernel": backend, "L": length, "rel_err": rel_err(out, ref)})
        except Exception as exc:  # noqa: BLE001 - report, keep going
            rows.append({"check": "dense", "kernel": backend, "L": length, "error": repr(exc)[:300]})
    for gqa in (1, 4):  # the fused estimator against the PyTorch one (and float64), MHA and GQA
        kk = k[:, : k.shape[1] // gqa]
        ref_mass = block_mass_torch(q.double(), kk.double(), 1 / math.sqrt(D), block)
        fused = block_mass_triton(q, kk, 1 / math.sqrt(D), block)
        rows.append({"check": "estimator", "kernel": "block_mass_triton", "L": length, "block": block, "gqa": gqa,
                     "rel_err": float((fused.double() - ref_mass).norm() / ref_mass.norm())})
    grid = select_blocks(q, k, length // 2, SelectionRule(block_size=block, select=select))
    mask = token_mask_from_grid(grid, block, length)
    ref_s = reference64(q, k, v, mask)
    kernels = {"flex": lambda: flex_block_sparse(q, k, v, grid, block, compile=True)}
    if fa4_module():
        kernels["fa4_sparse"] = lambda: fa4_block_sparse(q, k, v, grid, block)
    for name, fn in kernels.items():
        try:
            out = fn()
            rows.append({"check": "sparse", "kernel": name, "L": length, "block": block, "rel_err": rel_err(out, ref_s),
                         "rel_err_vs_dense": rel_err(out, ref)})
        except Exception as exc:  # noqa: BLE001
            rows.append({"check": "sparse", "kernel": name, "L": length, "block": block, "error": repr(exc)[:300]})
    return rows


def bench(length: int, heads: int, block: int, select: float, gen: torch.Generator, iters: int) -> list[dict]:
    B, D = 1, 128
    q, k = structured_qk(B, heads, length, D, gen)
    v = torch.randn(B, heads, length, D, device="cuda", generator=gen).bfloat16()
    flops_dense = 4 * B * heads * length * length * D
    rows = []
    for backend in dense_backends():
        try:
            ms = cuda_median_ms(lambda b=backend: dense_attention(q, k, v, None, backend=b), iters=iters)
            rows.append({"kind": "dense", "kernel": backend, "L": length, "H": heads, "ms": ms,
                         "tflops": flops_dense / ms / 1e9})
        except Exception as exc:  # noqa: BLE001
            rows.append({"kind": "dense", "kernel": backend, "L": length, "error": repr(exc)[:300]})
    rule = SelectionRule(block_size=block, select=select)
    grid = select_blocks(q, k, length - 128, rule)  # warm-up (Triton compile)
    density = float(grid.float().mean())
    ms = cuda_median_ms(lambda: select_blocks(q, k, length - 128, rule), warmup=1, iters=3)
    rows.append({"kind": "pattern", "kernel": "select_blocks_fused", "L": length, "H": heads, "block": block,
                 "ms": ms, "density": density})
    scale = 1 / math.sqrt(D)
    if length <= 16384:  # the eager estimator, for the record (seconds at 64k)
        ms = cuda_median_ms(lambda: block_mass_torch(q, k, scale, block), warmup=1, iters=3)
        rows.append({"kind": "pattern", "kernel": "block_mass_torch", "L": length, "H": heads, "block": block, "ms": ms,
                     "density": density})
    grid_torch = None
    if length <= 16384:
        from sparsed.attention import selection

        orig = selection.block_mass
        selection.block_mass = lambda *a, **kw: block_mass_torch(*a, **kw)
        grid_torch = select_blocks(q, k, length - 128, rule)
        selection.block_mass = orig
        rows.append({"check": "estimator_grid_agreement", "kernel": "fused_vs_torch", "L": length,
                     "rel_err": 1.0 - float((grid_torch == grid).float().mean())})
    kernels = {"flex": lambda: flex_block_sparse(q, k, v, grid, block, compile=True)}
    if fa4_module():
        kernels["fa4_sparse"] = lambda: fa4_block_sparse(q, k, v, grid, block)
    for name, fn in kernels.items():
        try:
            ms = cuda_median_ms(fn, iters=iters)
            rows.append({"kind": "sparse", "kernel": name, "L": length, "H": heads, "block": block, "ms": ms,
                         "density": density, "tflops_effective": flops_dense * density / ms / 1e9})
        except Exception as exc:  # noqa: BLE001
            rows.append({"kind": "sparse", "kernel": name, "L": length, "block": block, "error": repr(exc)[:300]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--select", type=float, default=0.3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", default="results/kernels.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels.py needs a CUDA GPU")
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for blk in sorted({args.block, 64}):
        rows += check(2048 + 77, blk, args.select, gen)  # a length that is not a multiple of any block
    for L in args.lengths:
        rows += bench(L, args.heads, args.block, args.select, gen, args.iters)
    result = {"command": " ".join(sys.argv), "device": device_info(torch.device("cuda")), "versions": versions(),
              "rows": rows}
    write_json_atomic(args.out, result)
    print(f"{'kind':8} {'kernel':14} {'L':>6} {'ms':>9} {'note'}")
    for r in rows:
        if "check" in r:
            print(f"check    {r['kernel']:14} {r['L']:>6} {'':>9} {r['check']} rel_err={r.get('rel_err', r.get('error'))}")
        else:
            if "ms" not in r:
                note = r.get("error")
            else:
                note = f"{r.get('tflops', r.get('tflops_effective', 0)):.0f} TFLOP/s"
            if r["kind"] == "pattern" and "ms" in r:
                note = f"density {r['density']:.3f}"
            print(f"{r['kind']:8} {r['kernel']:14} {r['L']:>6} {r.get('ms', math.nan):9.2f} {note}")
    for L in args.lengths:
        dense = [r["ms"] for r in rows if r.get("kind") == "dense" and r["L"] == L and "ms" in r]
        for r in rows:
            if r.get("kind") == "sparse" and r["L"] == L and "ms" in r and dense:
                print(f"L={L}: {r['kernel']} is {min(dense) / r['ms']:.2f}x faster than the fastest dense kernel "
                      f"({min(dense):.2f} ms)")


if __name__ == "__main__":
    main()
