"""Per-layer key/value buffers over the canvas, for forwards that compute only some rows.

One buffer pair per layer, [B, Hkv, L, D], post-RoPE (RoPE at absolute positions commutes with
caching: rotating a cached pre-RoPE key at its position gives the same numbers as caching it rotated,
so the goldens of the original pre-RoPE caches are reproduced). A forward over rows R writes the
fresh K/V of R into the buffers and attends over the buffers, so the rows it did not compute come
from the forward that last computed them. That one rule expresses every cache of the field:

* prefix cache (Fast-dLLM): refresh = a full forward; later steps recompute the block and everything
  after it, the prefix rows keep the refresh's K/V;
* dual cache (Fast-dLLM): later steps recompute the block only, prefix and suffix stay;
* delayed caches (dKV-Cache): each step recomputes the rows not yet cacheable, the others keep the
  values of the step that last computed them;
* block diffusion (SDAR): the prefix holds the finished blocks, the block is recomputed every step.

A full-canvas forward stores its K/V by reference (no copy); later partial forwards update those
tensors in place.
"""

from __future__ import annotations

import torch

# rows of one forward: None (every canvas row), (lo, hi) for rows lo..hi-1 of every batch row, or an
# int64 tensor [B, n] of canvas rows per batch row (sorted; repeated entries are allowed as padding)
Rows = None | tuple[int, int] | torch.Tensor


class KVCache:
    def __init__(self, canvas_length: int) -> None:
        self.canvas_length = canvas_length
        self.k: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def reset(self) -> None:
        self.k.clear()
        self.v.clear()

    @property
    def filled(self) -> bool:
        return bool(self.k)

    def update(self, layer: int, rows: Rows, k: torch.Tensor, v: torch.Tensor, key_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the fresh K/V of ``rows`` and return the keys/values of canvas rows [0, key_len)."""
        L = self.canvas_length
        if rows is None and k.shape[2] == L:
            self.k[layer], self.v[layer] = k, v
            return k[:, :, :key_len], v[:, :, :key_len]
        if layer not in self.k:
            B, H, _, D = k.shape
            self.k[layer] = k.new_zeros(B, H, L, D)
            self.v[layer] = v.new_zeros(B, H, L, D)
        kb, vb = self.k[layer], self.v[layer]
        if rows is None:
            kb[:, :, : k.shape[2]] = k
            vb[:, :, : v.shape[2]] = v
        elif isinstance(rows, tuple):
            kb[:, :, rows[0] : rows[1]] = k
            vb[:, :, rows[0] : rows[1]] = v
        else:
            idx = rows[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            kb.scatter_(2, idx, k)
            vb.scatter_(2, idx, v)
        return kb[:, :, :key_len], vb[:, :, :key_len]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k.values(), *self.v.values()))


def rows_positions(rows: Rows, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """The canvas rows as an int64 tensor [B, n]."""
    if rows is None:
        return torch.arange(length, device=device)[None].expand(batch, -1)
    if isinstance(rows, tuple):
        return torch.arange(rows[0], rows[1], device=device)[None].expand(batch, -1)
    return rows.to(device)


def gather_rows(x: torch.Tensor, rows: Rows) -> torch.Tensor:
    """x [B, L, ...] restricted to ``rows`` (a view for a span)."""
    if rows is None:
        return x
    if isinstance(rows, tuple):
        return x[:, rows[0] : rows[1]]
    idx = rows.to(x.device)
    if x.dim() == 2:
        return x.gather(1, idx)
    return x.gather(1, idx[..., None].expand(-1, -1, *x.shape[2:]))
