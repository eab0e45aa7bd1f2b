"""SparseD's block mass on the CPU through PyTorch's fused flash-attention kernel.

The mass of tile (query block i, key block j) is the sum over the rows r of block i of
``sum_{c in j} softmax(q k^T * scale)[r, c]``. That inner sum is the output of attention whose value
vectors are one-hot block indicators: with ``V[c, t] = 1`` when key c lies in block t, ``(P V)[r, t]``
is row r's probability mass on block t. The CPU flash kernel computes ``P V`` tile by tile in cache,
without a score matrix in memory, at dense-attention speed; it is only fast when V has the head dim of
q/k, so one call covers ``head_dim`` key blocks. Wider key ranges are split into chunks of that many
blocks and re-normalised with each chunk's log-sum-exp (returned by the same kernel):
``p = p_chunk * exp(lse_chunk - lse_all)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


@functools.cache
def flash_cpu_op() -> Callable | None:
    """The ATen CPU flash-attention op that also returns the log-sum-exp, or None on builds without it."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def flash_mass_supported(q: torch.Tensor, k: torch.Tensor, pool_dtype: torch.dtype | None) -> bool:
    """fp32 CPU tensors only: other dtypes keep the explicit softmax (the released code's rounding)."""
    return (
        flash_cpu_op() is not None
        and q.device.type == "cpu"
        and q.dtype == torch.float32
        and k.dtype == torch.float32
        and pool_dtype is None
        and q.shape[1] % k.shape[1] == 0
    )


def _block_indicator(n_keys: int, block_size: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """[n_keys, width]: column t is 1 on the keys of block t (columns past the last block stay 0)."""
    ind = torch.zeros(n_keys, width, dtype=dtype)
    keys = torch.arange(n_keys)
    ind[keys, keys // block_size] = 1.0
    return ind


def block_mass_flash_cpu(q: torch.Tensor, k: torch.Tensor, scale: float, block_size: int) -> torch.Tensor:
    """Sum of softmax(q k^T * scale) over every (query block, key block) tile: [B, Hq, nq, nk]."""
    op = flash_cpu_op()
    assert op is not None
    B, Hq, L, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    n_rep = Hq // Hkv
    nq, nk = math.ceil(L / block_size), math.ceil(Lk / block_size)
    # GQA: the n_rep query heads of one KV head become one longer query sequence (K is never repeated)
    qg = q.reshape(B, Hkv, n_rep * L, D)
    per_call = D
    outs, lses = [], []
    for first in range(0, nk, per_call):
        lo, hi = first * block_size, min(Lk, (first + per_call) * block_size)
        n_blocks = math.ceil((hi - lo) / block_size)
        ind = _block_indicator(hi - lo, block_size, D, q.dtype).expand(B, Hkv, hi - lo, D)
        out, lse = op(qg, k[:, :, lo:hi], ind, scale=scale)[:2]
        outs.append(out[..., :n_blocks])
        lses.append(lse)
    if len(outs) == 1:
        rows = outs[0]
    else:
        lse = torch.stack(lses)
        weights = torch.exp(lse - torch.logsumexp(lse, dim=0, keepdim=True))  # [chunks, B, Hkv, rows]
        rows = torch.cat([o * w[..., None] for o, w in zip(outs, weights, strict=True)], dim=-1)
    rows = rows.reshape(B, Hq, L, nk)
    pad = nq * block_size - L
    if pad:
        rows = F.pad(rows, (0, 0, 0, pad))
    return rows.reshape(B, Hq, nq, block_size, nk).sum(3)
