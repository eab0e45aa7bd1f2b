"""Fused block-importance estimator (Triton, CUDA): exact softmax mass of every (query block, key block) tile.

One program per (query block, batch*head). Pass 1 streams the keys once for each row's running max and
sum (online softmax); pass 2 streams them again, turns scores into probabilities with those statistics
and reduces each ``bs x bs`` tile to one number. The [rows, L] score matrix never exists in memory, so
the cost is about two QK^T products instead of several passes over a float32 score tensor.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@functools.cache
def _kernel():  # noqa: ANN202 - a triton.JITFunction, built lazily so CPU machines never import triton
    import triton
    import triton.language as tl

    @triton.jit
    def block_mass_kernel(
        Q, K, Out,
        sqb, sqh, sql, sqd, skb, skh, skl, skd, sob, soh, soi, soj,
        L, Lk, n_rep, H, scale_log2,
        BS: tl.constexpr, D: tl.constexpr, ROUND_BF16: tl.constexpr,
    ):
        i = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        hk = h // n_rep
        rows = i * BS + tl.arange(0, BS)
        dd = tl.arange(0, D)
        row_ok = rows < L
        q = tl.load(Q + b * sqb + h * sqh + rows[:, None] * sql + dd[None, :] * sqd, mask=row_ok[:, None], other=0.0)
        m = tl.full([BS], float("-inf"), tl.float32)
        s_sum = tl.zeros([BS], tl.float32)
        kbase = K + b * skb + hk * skh
        for start in range(0, Lk, BS):
            cols = start + tl.arange(0, BS)
            col_ok = cols < Lk
            kt = tl.load(kbase + cols[None, :] * skl + dd[:, None] * skd, mask=col_ok[None, :], other=0.0)
            s = tl.dot(q, kt) * scale_log2
            s = tl.where(col_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            s_sum = s_sum * tl.exp2(m - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
            m = m_new
        for start in range(0, Lk, BS):
            cols = start + tl.arange(0, BS)
            col_ok = cols < Lk
            kt = tl.load(kbase + cols[None, :] * skl + dd[:, None] * skd, mask=col_ok[None, :], other=0.0)
            s = tl.dot(q, kt) * scale_log2
            p = tl.exp2(s - m[:, None]) / s_sum[:, None]
            p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
            if ROUND_BF16:
                p = p.to(tl.bfloat16).to(tl.float32)
            total = tl.sum(tl.sum(p, 1), 0)
            tl.store(Out + b * sob + h * soh + i * soi + (start // BS) * soj, total)

    return block_mass_kernel


def block_mass_triton(q: torch.Tensor, k: torch.Tensor, scale: float, block_size: int, round_bf16: bool = False) -> torch.Tensor:
    """[B, Hq, nq, nk] tile sums of softmax(q k^T * scale) over the keys given (float32)."""
    import math

    B, Hq, L, D = q.shape
    Lk = k.shape[2]
    nq, nk = math.ceil(L / block_size), math.ceil(Lk / block_size)
    out = torch.empty(B, Hq, nq, nk, device=q.device, dtype=torch.float32)
    kernel = _kernel()
    kernel[(nq, B * Hq)](
        q, k, out, *q.stride(), *k.stride(), *out.stride(),
        L, Lk, Hq // k.shape[1], Hq, scale * 1.4426950408889634,
        BS=block_size, D=D, ROUND_BF16=round_bf16, num_warps=8 if block_size >= 128 else 4, num_stages=2,
    )
    return out
