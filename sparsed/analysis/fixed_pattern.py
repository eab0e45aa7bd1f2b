"""Block-sparse attention through a given head-specific block pattern (one grid per layer), from step 0 on.

The early-step analysis applies SparseD's pattern built at a chosen step of a reference run (see
``pattern_probe``) to another run; it attends through the same kernels as SparseD
(``kernels.block_sparse_attention``). Stateless: the output depends on the call's q/k/v and the grid only.
"""

from __future__ import annotations

import torch

from sparsed.attention.base import AttentionMethod
from sparsed.attention.kernels import block_sparse_attention
from sparsed.attention.methods.sparsed import attended_pairs


class FixedBlockPattern(AttentionMethod):
    name = "fixed_block_pattern"

    def __init__(self, grids: dict[int, torch.Tensor], block_size: int, kernel: str = "flex") -> None:
        super().__init__()
        self.grids = grids  # layer -> bool [B or 1, Hq, nq, nk]
        self.block_size = block_size
        self.kernel = kernel

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see AttentionMethod
        if key_valid is not None:
            raise ValueError("FixedBlockPattern serves unpadded rows only")
        B, H, L, _ = q.shape
        grid = self.grids[layer].to(q.device)
        if grid.shape[0] != B:
            grid = grid.expand(B, -1, -1, -1)
        self.record(layer, attended_pairs(grid, self.block_size, L), float(B * H * L * L), sparse=True)
        return block_sparse_attention(self.kernel, q, k, v, grid, self.block_size)
