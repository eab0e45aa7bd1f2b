"""Left padding, turned into right padding for the methods whose pattern depends on absolute position.

With left padding a row's real tokens start at ``pad[b]``; block boundaries, attention sinks and the
prompt/generation split would then shift with the amount of padding, and a padded row would not get the
pattern it gets alone. Rolling each row left by its padding puts its tokens at 0..len-1 (as in an
unpadded run); the padding moves to the end, where a ``kv < valid_len[b]`` mask removes it.
"""

from __future__ import annotations

import torch


def _roll_index(pad: torch.Tensor, length: int, sign: int) -> torch.Tensor:
    ar = torch.arange(length, device=pad.device)
    return (ar[None, :] + sign * pad[:, None]) % length  # [B, L]


def left_align(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """x [B, H, L, D]: row b rolled left by pad[b] (real tokens first)."""
    idx = _roll_index(pad.to(x.device), x.shape[2], +1)
    return x.gather(2, idx[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))


def restore_left_padding(x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`left_align`."""
    idx = _roll_index(pad.to(x.device), x.shape[2], -1)
    return x.gather(2, idx[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))
