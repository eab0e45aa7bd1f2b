"""Block-pooled attention probabilities of one attention call, one query block at a time.

``pooled_attention`` returns, for every (query block, key block) of the canvas, the mean over the block's
query rows of the softmax probability mass those rows put on the key block: rows sum to 1 over the keys
a query may attend to. Only one query block's scores ([B, H, block, Lk]) exist at any time, so the
memory is bounded at any length (never the L x L map).

The unmasked full-canvas call goes through SparseD's own estimator (``selection.block_mass``: the fused
Triton kernel on CUDA, no score matrix at all); calls with padding, a block-causal mask or a subset of
query rows (a KV-cache step) go through the masked loop below.
"""

from __future__ import annotations

import math

import torch

from sparsed.attention.selection import block_mass


def select_heads(q: torch.Tensor, k: torch.Tensor, heads: list[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, k) restricted to the query heads ``heads`` (None = all), each paired with its own K/V head."""
    if heads is None:
        return q, k
    n_rep = q.shape[1] // k.shape[1]
    idx = torch.tensor(heads, device=q.device)
    return q.index_select(1, idx), k.index_select(1, idx // n_rep)


def pooled_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    block_size: int,
    *,
    scale: float | None = None,
    mask: torch.Tensor | None = None,
    q_pos: torch.Tensor | None = None,
    n_query_rows: int | None = None,
) -> torch.Tensor:
    """Block-pooled softmax(q k^T * scale): float32 [B, Hq, nq, nk].

    q [B, Hq, Lq, D], k [B, Hkv, Lk, D] (GQA when Hq > Hkv). ``mask`` is a bool key mask (True = may attend)
    of shape [B, Lk] or [B, 1 or Hq, Lq, Lk]. ``q_pos`` [B, Lq] gives the canvas rows of the queries when
    they are not rows 0..Lq-1 (a cached call), ``n_query_rows`` the canvas length the query blocks tile
    (default: Lq). A query block that holds no query of this call is NaN.
    """
    B, Hq, Lq, D = q.shape
    Lk = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    rows = Lq if n_query_rows is None else n_query_rows
    nq, nk = math.ceil(rows / block_size), math.ceil(Lk / block_size)
    if mask is None and q_pos is None and rows == Lq:
        counts = torch.full((nq,), float(block_size), device=q.device)
        counts[-1] = Lq - (nq - 1) * block_size
        return block_mass(q, k, scale, block_size) / counts[:, None]
    return _masked_pooled(q, k, block_size, scale, mask, q_pos, nq, nk)


def _masked_pooled(q: torch.Tensor, k: torch.Tensor, bs: int, scale: float, mask: torch.Tensor | None,
                   q_pos: torch.Tensor | None, nq: int, nk: int) -> torch.Tensor:
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    n_rep = Hq // Hkv
    if q_pos is None:
        q_pos = torch.arange(Lq, device=q.device)[None].expand(B, -1)
    qblock = (q_pos // bs).to(q.device)  # [B, Lq]
    if mask is not None and mask.dim() == 2:
        mask = mask[:, None, None, :]
    mass = torch.zeros(B, Hq, nq, nk, dtype=torch.float32, device=q.device)
    counts = torch.zeros(B, nq, dtype=torch.float32, device=q.device)
    pad = nk * bs - Lk
    for lo in range(0, Lq, bs):
        hi = min(lo + bs, Lq)
        qg = q[:, :, lo:hi].reshape(B, Hkv, n_rep * (hi - lo), D)  # GQA without repeating the keys
        s = (torch.matmul(qg, k.transpose(-1, -2)).float() * scale).reshape(B, Hq, hi - lo, Lk)
        if mask is not None:
            m = mask[:, :, lo:hi] if mask.shape[2] > 1 else mask
            s = s.masked_fill(~m, float("-inf"))
        # a row that may attend to nothing (a padding query under a block-causal mask) adds nothing
        live = torch.isfinite(s).any(-1)  # [B, Hq, r]
        p = torch.softmax(s, dim=-1).nan_to_num(0.0)
        if pad:
            p = torch.nn.functional.pad(p, (0, pad))
        per_row = p.reshape(B, Hq, hi - lo, nk, bs).sum(-1)  # [B, Hq, r, nk]
        idx = qblock[:, lo:hi]
        mass.scatter_add_(2, idx[:, None, :, None].expand(-1, Hq, -1, nk), per_row)
        counts.scatter_add_(1, idx, live[:, 0].float())
    out = mass / counts[:, None, :, None]
    return out  # 0/0 = NaN marks query blocks without a query in this call
