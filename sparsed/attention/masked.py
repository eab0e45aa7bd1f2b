"""Shared machinery for the fixed-pattern baselines (a token-level ``mask_mod`` on FlexAttention)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sparsed.attention.base import AttentionMethod
from sparsed.attention.kernels import repeat_kv
from sparsed.attention.padding import left_align, restore_left_padding

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class FixedPatternMethod(AttentionMethod):
    """A method whose pattern is a fixed function of (query, key) positions, from the first step on.

    Subclasses give ``mask_mod(length)``; rows are left-aligned first so that positions count from each
    row's first real token, and keys past a row's end are masked out.
    """

    dense_before_generation = True

    def mask_mod(self, length: int, valid_len: torch.Tensor | None = None) -> MaskMod:
        """Token-level pattern; ``valid_len`` [B] gives each row's real length when rows are padded."""
        raise NotImplementedError

    def density(self, length: int) -> float:
        raise NotImplementedError

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see base class
        B, H, L, _ = q.shape
        info = self.info
        pad = info.pad_counts if info is not None and info.has_padding else None
        if pad is not None:
            q, k, v = (left_align(t, pad) for t in (q, k, v))
        valid = None if pad is None else (L - pad).to(q.device)
        mm = self.mask_mod(L, valid)
        if valid is not None:
            inner = mm

            def mm(b, h, qi, kv):  # noqa: ANN001, ANN202
                return inner(b, h, qi, kv) & (kv < valid[b])

        out = masked_attention(q, k, v, mm)
        self.record(layer, self.density(L) * B * H * L * L, B * H * L * L, sparse=True)
        return out if pad is None else restore_left_padding(out, pad)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_mod: MaskMod) -> torch.Tensor:
    """FlexAttention with a token-level mask on CUDA; an explicit boolean mask with SDPA on the CPU."""
    B, Hq, L, _ = q.shape
    if q.is_cuda:
        from torch.nn.attention.flex_attention import create_block_mask

        from sparsed.attention.kernels import _compiled_flex

        bm = create_block_mask(mask_mod, B, None, L, L, device=q.device)
        return _compiled_flex()(q, k, v, block_mask=bm, enable_gqa=Hq != k.shape[1])
    ar = torch.arange(L, device=q.device)
    b = torch.arange(B, device=q.device)[:, None, None]
    mask = mask_mod(b, torch.zeros_like(b), ar[None, :, None], ar[None, None, :])[:, None]
    n_rep = Hq // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask)
