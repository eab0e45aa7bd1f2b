"""Block-sparse attention on the CPU: gather each query block's kept key blocks, then run dense SDPA on them.

A pattern is a bool grid [B, Hq, nq, nk] of kept key blocks per head and query block. PyTorch's CPU SDPA
(the flash kernel) is efficient but has no block-sparse mode, and masked SDPA still does all L x L work.
Here every query block becomes one batch row of an *unmasked* SDPA call whose keys are only its kept
blocks, concatenated:

* Kept blocks that hold no valid key (past the end of a right-padded row) are dropped; they would be
  masked anyway. After that at most one kept block is partial (the row's last real block) and, taken in
  ascending order, it comes last, so the valid keys of a gathered row are a *prefix* of it.
* Rows are bucketed by that prefix length (which fixes the block count too), so every bucket is a plain
  rectangular SDPA call without any mask: variable counts per row are exact, with no padding waste.
* K/V are gathered per bucket from a [B*Hkv*nk, bs, D] block view, so GQA reads the shared KV head
  directly (nothing is repeated in memory) and gathered memory stays below ``budget_elems`` per chunk.

Building the plan (bucketing) touches only the small grid; SparseD reuses one pattern for many steps, so
the plan is cached per grid object and rebuilt only when the grid (or its contents) changes.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Elements of gathered K (and as many of V) per SDPA call: 2**22 fp32 = 16 MiB each. Smaller chunks stay
# in cache (2 MiB is ~20% faster on an idle 2-core machine) but every chunk costs five parallel regions,
# and on a busy machine each region waits for a descheduled thread: there 2 MiB chunks ran 2x slower.
DEFAULT_BUDGET_ELEMS = 1 << 22


@dataclass(frozen=True)
class Bucket:
    """Query blocks whose gathered keys have the same valid length."""

    rows: torch.Tensor  # int64 [n]: flat query-block ids into [B*Hq*nq]
    kv_blocks: torch.Tensor  # int64 [n, count]: flat key-block ids into [B*Hkv*nk], ascending per row
    n_keys: int  # valid keys per gathered row: (count - 1) * bs + size of the last kept block


@dataclass(frozen=True)
class GatherPlan:
    buckets: tuple[Bucket, ...]
    shape: tuple[int, int, int, int]  # (B, Hq, nq, nk)
    block_size: int
    length: int
    kv_heads: int


def valid_keys_per_block(nk: int, block_size: int, length: int, valid_len: torch.Tensor | None,
                         batch: int) -> torch.Tensor:
    """[B, nk] number of real keys in every key block (0 for blocks past a row's end)."""
    ends = torch.full((batch,), length, dtype=torch.long)
    if valid_len is not None:
        ends = torch.minimum(ends, valid_len.detach().to("cpu", torch.long))
    starts = torch.arange(nk, dtype=torch.long) * block_size
    return (ends[:, None] - starts[None, :]).clamp(0, block_size)


def build_plan(grid: torch.Tensor, block_size: int, length: int, kv_heads: int,
               valid_len: torch.Tensor | None = None) -> GatherPlan:
    """Bucket every (batch, head, query block) of ``grid`` by the number of valid keys it attends to."""
    B, Hq, nq, nk = grid.shape
    if Hq % kv_heads:
        raise ValueError(f"{Hq} query heads are not a multiple of {kv_heads} KV heads")
    n_rep = Hq // kv_heads
    g = grid.detach().to("cpu", torch.bool)
    per_block = valid_keys_per_block(nk, block_size, length, valid_len, B)  # [B, nk]
    g = g & (per_block > 0)[:, None, None, :]
    n_keys = (g * per_block[:, None, None, :]).sum(-1).reshape(-1)  # [B*Hq*nq]
    order = torch.arange(nk, dtype=torch.long)
    # distinct sort keys: kept blocks first in ascending order, then the dropped ones (never read)
    kept_first = torch.where(g, order, order + nk).argsort(dim=-1).reshape(-1, nk)
    b_idx = torch.arange(B)[:, None, None].expand(B, Hq, nq).reshape(-1)
    kvh_idx = (torch.arange(Hq) // n_rep)[None, :, None].expand(B, Hq, nq).reshape(-1)
    kv_base = (b_idx * kv_heads + kvh_idx) * nk  # first key block of each row's KV head
    buckets = []
    for value in torch.unique(n_keys).tolist():
        if value == 0:
            continue  # nothing to attend to: the output stays zero, as masked SDPA returns
        rows = (n_keys == value).nonzero().squeeze(1)
        count = math.ceil(value / block_size)
        blocks = kept_first[rows, :count] + kv_base[rows, None]
        buckets.append(Bucket(rows, blocks.contiguous(), int(value)))
    return GatherPlan(tuple(buckets), (B, Hq, nq, nk), block_size, length, kv_heads)


class _PlanCache:
    """The plan of the last few grids, keyed by object identity and checked against the grid's version."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.entries: dict[int, tuple[weakref.ref, int, tuple, GatherPlan]] = {}

    def get(self, grid: torch.Tensor, key: tuple) -> GatherPlan | None:
        hit = self.entries.get(id(grid))
        if hit is None:
            return None
        ref, version, k, plan = hit
        if ref() is not grid or version != grid._version or k != key:
            return None
        return plan

    def put(self, grid: torch.Tensor, key: tuple, plan: GatherPlan) -> None:
        if len(self.entries) >= self.size:
            dead = [i for i, (r, *_rest) in self.entries.items() if r() is None]
            for i in dead or list(self.entries)[: self.size // 2]:
                del self.entries[i]
        self.entries[id(grid)] = (weakref.ref(grid), grid._version, key, plan)


_CACHE = _PlanCache()


def cached_plan(grid: torch.Tensor, block_size: int, length: int, kv_heads: int,
                valid_len: torch.Tensor | None) -> GatherPlan:
    vl = None if valid_len is None else tuple(int(x) for x in valid_len.tolist())
    key = (block_size, length, kv_heads, vl, tuple(grid.shape))
    plan = _CACHE.get(grid, key)
    if plan is None:
        plan = build_plan(grid, block_size, length, kv_heads, valid_len)
        _CACHE.put(grid, key, plan)
    return plan


def _as_blocks(x: torch.Tensor, n_blocks: int, block_size: int) -> torch.Tensor:
    """[B, H, L, D] -> [B*H*n_blocks, bs, D] (zero-padded at the end; a view when nothing is padded)."""
    B, H, L, D = x.shape
    pad = n_blocks * block_size - L
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(B * H * n_blocks, block_size, D)


def gather_block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: torch.Tensor,
    block_size: int,
    valid_len: torch.Tensor | None = None,
    scale: float | None = None,
    budget_elems: int = DEFAULT_BUDGET_ELEMS,
    plan: GatherPlan | None = None,
) -> torch.Tensor:
    """Attention of q [B, Hq, L, D] over the key blocks kept in ``grid`` only (keys >= valid_len[b] masked).

    Equals masked SDPA over the token mask the grid describes; a row with no valid key gets zeros.
    """
    B, Hq, L, D = q.shape
    Hkv = k.shape[1]
    nq, nk = grid.shape[-2:]
    if (nq, nk) != (math.ceil(L / block_size),) * 2:
        raise ValueError(f"grid {tuple(grid.shape)} does not tile length {L} with blocks of {block_size}")
    if plan is None:
        plan = cached_plan(grid, block_size, L, Hkv, valid_len)
    qb = _as_blocks(q, nq, block_size)
    kb = _as_blocks(k, nk, block_size)
    vb = _as_blocks(v, nk, block_size)
    Dv = v.shape[-1]
    out = q.new_zeros(B * Hq * nq, block_size, Dv)
    steps = [max(1, budget_elems // (b.kv_blocks.shape[1] * block_size * D)) for b in plan.buckets]
    # One set of gather buffers for every chunk: fresh multi-MiB tensors per chunk would page-fault on
    # every call (glibc hands large blocks back to the OS), which costs more than the copy itself.
    max_blocks = max((min(st, b.rows.numel()) * b.kv_blocks.shape[1] for st, b in zip(steps, plan.buckets, strict=True)),
                     default=0)
    max_rows = max((min(st, b.rows.numel()) for st, b in zip(steps, plan.buckets, strict=True)), default=0)
    kbuf = k.new_empty(max_blocks, block_size, D)
    vbuf = v.new_empty(max_blocks, block_size, Dv)
    qbuf = q.new_empty(max_rows, block_size, D)
    for bucket, step in zip(plan.buckets, steps, strict=True):
        count = bucket.kv_blocks.shape[1]
        bucket_rows, bucket_blocks = bucket.rows.to(q.device), bucket.kv_blocks.to(q.device)
        for lo in range(0, bucket_rows.numel(), step):
            rows = bucket_rows[lo : lo + step]
            blocks = bucket_blocks[lo : lo + step].reshape(-1)
            n = rows.numel()
            kg = torch.index_select(kb, 0, blocks, out=kbuf[: n * count])
            vg = torch.index_select(vb, 0, blocks, out=vbuf[: n * count])
            qg = torch.index_select(qb, 0, rows, out=qbuf[:n])
            o = F.scaled_dot_product_attention(
                qg.unsqueeze(1),
                kg.view(n, 1, count * block_size, D)[:, :, : bucket.n_keys],
                vg.view(n, 1, count * block_size, Dv)[:, :, : bucket.n_keys],
                scale=scale,
            )
            out.index_copy_(0, rows, o.squeeze(1))
    return out.view(B, Hq, nq * block_size, Dv)[:, :, :L]
