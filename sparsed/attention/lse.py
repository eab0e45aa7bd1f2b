"""Attention that also returns the log-sum-exp of its scores, and the exact merge of two such parts.

A query's attention over a key set K = K1 ∪ K2 (disjoint) is the LSE-weighted combination of its
attention over K1 and over K2: with L = log(e^L1 + e^L2), o = e^(L1-L) o1 + e^(L2-L) o2. The cached
methods (Quest, LoSA, SparseD on the cache) compute the in-block part and the prefix part apart, reuse
or sparsify the prefix part, and merge.

``attention_lse`` uses PyTorch's fused kernels where they return the LSE (the CPU flash kernel; CUDA's
memory-efficient kernel) and a chunked float computation elsewhere (float64 checks). Masks are bool
[B, 1 or Hq, Lq, Lk], True = may attend; a query with no allowed key gets output 0 and LSE -inf.
GQA folds the query heads of a K/V head into rows, so K/V are never repeated.
"""

from __future__ import annotations

import math

import torch

_CHUNK = 4096


def _manual(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float,
            dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Online softmax over key chunks (never more than Lq x 4096 scores per head at a time)."""
    qf, out_shape = q.to(dtype), q.shape
    m = torch.full(out_shape[:-1], -torch.inf, dtype=dtype, device=q.device)
    s_sum = torch.zeros(out_shape[:-1], dtype=dtype, device=q.device)
    acc = torch.zeros(*out_shape[:-1], v.shape[-1], dtype=dtype, device=q.device)
    for start in range(0, k.shape[2], _CHUNK):
        kc, vc = k[:, :, start : start + _CHUNK].to(dtype), v[:, :, start : start + _CHUNK].to(dtype)
        s = torch.matmul(qf, kc.transpose(-1, -2)) * scale
        if mask is not None:
            s = s.masked_fill(~mask[..., start : start + _CHUNK], -torch.inf)
        m_new = torch.maximum(m, s.amax(-1))
        safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
        p = torch.exp(s - safe[..., None])
        corr = torch.exp(m - safe)
        s_sum = s_sum * corr + p.sum(-1)
        acc = acc * corr[..., None] + torch.matmul(p, vc)
        m = m_new
    lse = torch.where(s_sum > 0, torch.log(s_sum) + torch.where(torch.isinf(m), torch.zeros_like(m), m),
                      torch.full_like(m, -torch.inf))
    out = torch.where(s_sum[..., None] > 0, acc / s_sum.clamp(min=1e-300)[..., None], torch.zeros_like(acc))
    return out, lse


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                  scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(output [B, Hq, Lq, D] in q's dtype, LSE [B, Hq, Lq] in float32 or float64) of softmax attention."""
    B, Hq, Lq, D = q.shape
    Hkv, Lk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    n_rep = Hq // Hkv
    if Lk == 0:
        return q.new_zeros(B, Hq, Lq, v.shape[-1]), torch.full((B, Hq, Lq), -torch.inf, device=q.device)
    # fold GQA groups into rows: [B, Hkv, n_rep * Lq, D]
    qg = q.reshape(B, Hkv, n_rep * Lq, D)
    mg = None
    if mask is not None:
        mg = mask.expand(B, Hq, Lq, Lk).reshape(B, Hkv, n_rep * Lq, Lk)
    if q.dtype == torch.float64:
        out, lse = _manual(qg, k, v, mg, scale, torch.float64)
    elif q.device.type == "cpu":
        bias = None
        if mg is not None:
            bias = torch.zeros(mg.shape, dtype=q.dtype, device=q.device).masked_fill(~mg, -torch.inf)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(qg, k, v, 0.0, False, attn_mask=bias,
                                                                              scale=scale)[:2]
        if mg is not None:  # a fully masked row: the fused kernel returns NaN there
            empty = ~mg.any(-1)
            out = out.masked_fill(empty[..., None], 0.0)
            lse = lse.masked_fill(empty, -torch.inf)
    else:
        out, lse = _cuda_lse(qg, k, v, mg, scale)
    return out.reshape(B, Hq, Lq, -1).to(q.dtype), lse.reshape(B, Hq, Lq)


def _cuda_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
              scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    bias = None
    if mask is not None:
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, -torch.inf)
    try:
        res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, scale=scale)
        out, lse = res[0], res[1][..., : q.shape[2]].float()
    except RuntimeError:  # shapes the fused kernel refuses: the chunked computation
        out, lse = _manual(q, k, v, mask, scale, torch.float32)
    if mask is not None:
        empty = ~mask.any(-1)
        out = out.masked_fill(empty[..., None], 0.0)
        lse = lse.masked_fill(empty, -torch.inf)
    return out, lse


def merge(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor, lse2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over the union of two disjoint key sets from the attention over each (exact)."""
    lse = torch.logaddexp(lse1, lse2)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
    w1 = torch.exp(lse1 - safe)[..., None]
    w2 = torch.exp(lse2 - safe)[..., None]
    out = (w1 * o1.to(w1.dtype) + w2 * o2.to(w2.dtype)).to(o1.dtype)
    return out, lse
