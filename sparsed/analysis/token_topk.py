"""Token-level top-k attention (the SparseD paper's Eq. 2, used by its Figure 2): every query keeps the top
``ratio`` of its keys by score and attends to those only.

It builds the full [B, H, Lq, Lk] score matrix, so it is for short prompts (analysis), not a method to run
at length; it is therefore not registered as a run's ``attention=`` choice.
"""

from __future__ import annotations

import math

import torch

from sparsed.attention.base import AttentionMethod
from sparsed.attention.dense_kernels import repeat_kv


class TokenTopK(AttentionMethod):
    name = "token_topk"

    def __init__(self, ratio: float = 0.3) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio={ratio} is outside (0, 1]")
        self.ratio = ratio

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see AttentionMethod
        B, H, Lq, D = q.shape
        n_rep = H // k.shape[1]
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
        s = torch.matmul(q, k.transpose(-1, -2)).float() / math.sqrt(D)
        if key_valid is not None:
            s = s.masked_fill(~key_valid[:, None, None, :], float("-inf"))
            n_keys = key_valid.sum(-1)  # [B]
        else:
            n_keys = torch.full((B,), k.shape[2], device=q.device)
        keep = torch.ceil(self.ratio * n_keys.float() - 1e-9).clamp(min=1).long()  # ceil(ratio * n) keys per query
        kmax = int(keep.max())
        top = s.topk(kmax, dim=-1).indices  # [B, H, Lq, kmax], best first
        rank_ok = torch.arange(kmax, device=q.device)[None, None, None, :] < keep[:, None, None, None]
        mask = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, top, rank_ok.expand_as(top))
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1).to(v.dtype)
        self.record(layer, float(keep.sum()) * H * Lq, float(B * H * Lq * k.shape[2]), sparse=True)
        return torch.matmul(p, v)
