"""GPU-only checks (skipped without CUDA): compiled FlexAttention with the BlockMask, the fused estimator."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sparsed.attention.kernels import flex_block_sparse, token_mask_from_grid
from sparsed.attention.selection import block_mass_torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("block", [64, 128])
def test_compiled_flex_block_sparse_matches_float64(block):
    L = 1000 + block  # not a multiple of the block
    g = torch.Generator(device="cuda").manual_seed(block)
    q, k, v = (torch.randn(1, 4, L, 64, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(3))
    nb = math.ceil(L / block)
    grid = torch.rand(1, 4, nb, nb, device="cuda", generator=g) < 0.3
    grid[..., 0] = True
    out = flex_block_sparse(q, k, v, grid, block, compile=True)
    mask = token_mask_from_grid(grid, block, L)
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    assert float((out.double() - ref).norm() / ref.norm()) < 1e-2


def test_fused_estimator_matches_float64():
    from sparsed.attention.estimator_triton import block_mass_triton

    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 8, 777, 64, device="cuda", generator=g, dtype=torch.bfloat16)
    k = torch.randn(1, 2, 777, 64, device="cuda", generator=g, dtype=torch.bfloat16)
    ref = block_mass_torch(q.double(), k.double(), 0.125, 64)
    fused = block_mass_triton(q, k, 0.125, 64)
    assert float((fused.double() - ref).norm() / ref.norm()) < 1e-5
