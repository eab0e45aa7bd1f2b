"""Shared machinery for the fixed-pattern baselines (a token-level ``mask_mod`` on FlexAttention)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sparsed.attention.base import AttentionMethod, Layout
from sparsed.attention.kernels import repeat_kv
from sparsed.attention.padding import left_align, restore_left_padding

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
COMPILED_MASK_FROM = 16384  # canvas length from which a CUDA block mask is created compiled (memory, see build_mask)


class FixedPatternMethod(AttentionMethod):
    """A method whose pattern is a fixed function of (query, key) positions, from the first step on.

    Subclasses give ``mask_mod(length)``; rows are left-aligned first so that positions count from each
    row's first real token, and keys past a row's end are masked out. The mask is built once per
    canvas (length and padding) and shared by every layer and step of a generation.
    """

    supports_layout = True

    def __init__(self) -> None:
        super().__init__()
        self._masks: dict[tuple, tuple[Any, float]] = {}

    def reset(self) -> None:
        self._masks = {}

    def mask_mod(self, length: int, valid_len: torch.Tensor | None = None) -> MaskMod:
        """Token-level pattern; ``valid_len`` [B] gives each row's real length when rows are padded."""
        raise NotImplementedError

    def density(self, length: int) -> float:
        raise NotImplementedError

    def _mask_for(self, q: torch.Tensor, pad: torch.Tensor | None) -> tuple[Any, float]:
        B, _, L, _ = q.shape
        key = (B, L, q.device, None if pad is None else tuple(pad.tolist()))
        if key not in self._masks:
            valid = None if pad is None else (L - pad).to(q.device)
            mm = self.mask_mod(L, valid)
            if valid is not None:
                inner = mm

                def mm(b, h, qi, kv):  # noqa: ANN001, ANN202
                    return inner(b, h, qi, kv) & (kv < valid[b])

            self._masks[key] = (build_mask(mm, B, L, q.device), self.density(L))
        return self._masks[key]

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see base class
        B, H, L, _ = q.shape
        info = self.info
        pad = info.pad_counts if info is not None and info.has_padding else None
        if pad is not None:
            q, k, v = (left_align(t, pad) for t in (q, k, v))
        mask, density = self._mask_for(q, pad)
        out = masked_attention(q, k, v, mask)
        self.record(layer, density * B * H * L * L, B * H * L * L, sparse=True)
        return out if pad is None else restore_left_padding(out, pad)


    def attend_layout(self, layer, q, k, v, key_valid, layout: Layout):  # noqa: ANN001, ANN201 - see base class
        """A cached or block-causal call: the same pattern, evaluated at the queries' canvas rows.

        Positions count from each row's first real token (as in a plain call), so a padded row gets the
        pattern it gets alone; the mask is [B, 1, Lq, Lk], small because a cached call has few queries.
        """
        B, H, Lq, _ = q.shape
        Lk = k.shape[2]
        info = self.info
        canvas = info.canvas_length if info is not None else Lk
        pad = info.pad_counts if info is not None and info.has_padding else None
        dev = q.device
        shift = torch.zeros(B, dtype=torch.long, device=dev) if pad is None else pad.to(dev)
        valid = None if pad is None else (canvas - shift)
        mm = self.mask_mod(canvas, valid)
        qi = (layout.q_pos.to(dev) - shift[:, None])[:, :, None]
        ki = (torch.arange(Lk, device=dev)[None, :] - shift[:, None])[:, None, :]
        b = torch.arange(B, device=dev)[:, None, None]
        mask = (mm(b, torch.zeros_like(b), qi, ki) & (ki >= 0))[:, None]
        extra = layout.key_mask(key_valid)
        if extra is not None:
            mask = mask & extra
        self.record(layer, float(mask.sum()) * H, float(B * H * Lq * Lk), sparse=True)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=H != k.shape[1])


def build_mask(mask_mod: MaskMod, batch: int, length: int, device: torch.device) -> Any:  # noqa: ANN401
    """A FlexAttention BlockMask on CUDA; an explicit boolean mask [B, 1, L, L] on the CPU."""
    if device.type == "cuda":
        from torch.nn.attention.flex_attention import create_block_mask

        if length >= COMPILED_MASK_FROM:
            # eager creation evaluates mask_mod on the whole [L, L] grid with int64 position temporaries:
            # at 64k that peaked at 82 GiB on an H200 (results/latency/h200.md, StreamingLLM); the compiled
            # creation works block by block. Below the threshold eager is cheaper than a compilation.
            try:
                return create_block_mask(mask_mod, batch, None, length, length, device=device, _compile=True)
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not stop the run: eager still works
                warnings.warn(f"compiled block-mask creation failed ({type(exc).__name__}: {exc}); building it "
                              "eagerly (memory grows with length squared)", stacklevel=2)
        return create_block_mask(mask_mod, batch, None, length, length, device=device)
    ar = torch.arange(length, device=device)
    b = torch.arange(batch, device=device)[:, None, None]
    return mask_mod(b, torch.zeros_like(b), ar[None, :, None], ar[None, None, :])[:, None]


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any) -> torch.Tensor:  # noqa: ANN401
    """Attention under a mask from ``build_mask``: fused FlexAttention on CUDA, masked SDPA on the CPU."""
    Hq = q.shape[1]
    if q.is_cuda:
        from sparsed.attention.kernels import _compiled_flex

        return _compiled_flex()(q, k, v, block_mask=mask, enable_gqa=Hq != k.shape[1])
    n_rep = Hq // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask)
