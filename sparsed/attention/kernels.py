"""Block-sparse attention kernels (Flex / FA4 / masked SDPA / CPU gather) from a block-level selection grid.

Everything takes q [B, Hq, L, D] and k, v [B, Hkv, L, D] (GQA when Hq > Hkv) and returns [B, Hq, L, D].
The dense kernels live in ``dense_kernels`` (re-exported here for the existing callers).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sparsed.attention.cpu_block_sparse import gather_block_sparse_attention
from sparsed.attention.dense_kernels import (  # noqa: F401 - re-exported
    DENSE_BACKENDS,
    SDPA_BACKENDS,
    _first,
    available_dense_backends,
    dense_attention,
    fa3_func,
    fa4_module,
    repeat_kv,
)

SPARSE_KERNELS = ("flex", "fa4", "sdpa_mask")


def grid_to_kv_layout(grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bool [B, H, nq, nk] -> (counts int32 [B, H, nq], indices int32 [B, H, nq, nk]).

    Selected key blocks come first, in ascending order; the width stays ``nk`` so that shapes (and
    therefore compiled kernels) do not change with the number kept.
    """
    nk = grid.shape[-1]
    counts = grid.sum(-1, dtype=torch.int32)
    order = torch.arange(nk, device=grid.device, dtype=torch.int32)
    indices = torch.where(grid, order, order + nk).argsort(dim=-1).to(torch.int32)
    return counts.contiguous(), indices.contiguous()


@functools.cache
def _compiled_flex() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    # Every new sequence length is a new graph; the default limit (8) would silently fall back to
    # eager flex, which materialises the full score matrix.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 1024)
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 1024)
    return torch.compile(flex_attention, dynamic=False)


def _padding_mask_mod(valid_len: torch.Tensor) -> Callable:
    def mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's signature
        return kv_idx < valid_len[b]

    return mask_mod


def _grid_mask_mod(grid: torch.Tensor, block_size: int, valid_len: torch.Tensor | None) -> Callable:
    def mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's signature
        keep = grid[b, h, q_idx // block_size, kv_idx // block_size]
        return keep if valid_len is None else keep & (kv_idx < valid_len[b])

    return mask_mod


def build_block_mask(grid: torch.Tensor, block_size: int, length: int, valid_len: torch.Tensor | None = None,
                     mask_mod: Callable | None = None, full_blocks: bool = True):  # noqa: ANN201 - a flex BlockMask
    """A FlexAttention ``BlockMask`` straight from the block grid (``BlockMask.from_kv_blocks``).

    Selected blocks are "full" blocks, so no per-element function runs inside them. With right
    padding (``valid_len`` [B]), the blocks that straddle a row's end become partial blocks whose
    ``mask_mod`` hides the padding, and blocks past the end are dropped.

    ``full_blocks=False`` lists every selected block as a partial block instead (its ``mask_mod`` is the
    padding mask, or none): inductor's CPU flex template does not build without partial-block lists
    (torch 2.13: "kv_indices was not declared"), and a trivial mask is cheap there.
    """
    from torch.nn.attention.flex_attention import BlockMask

    nb = math.ceil(length / block_size)
    if valid_len is None:
        counts, idx = grid_to_kv_layout(grid)
        if not full_blocks:
            return BlockMask.from_kv_blocks(counts, idx, None, None, BLOCK_SIZE=(block_size, block_size),
                                            mask_mod=mask_mod, seq_lengths=(length, length))
        part_cnt, part_idx, full_cnt, full_idx = torch.zeros_like(counts), idx, counts, idx
    else:
        block_start = torch.arange(nb, device=grid.device) * block_size
        vl = valid_len.to(grid.device)[:, None, None, None]
        if mask_mod is None:
            mask_mod = _padding_mask_mod(valid_len.to(grid.device))
        if not full_blocks:
            counts, idx = grid_to_kv_layout(grid & (block_start < vl))
            return BlockMask.from_kv_blocks(counts, idx, None, None, BLOCK_SIZE=(block_size, block_size),
                                            mask_mod=mask_mod, seq_lengths=(length, length))
        inside = grid & (block_start + block_size <= vl)  # wholly before the row's end
        straddle = grid & (block_start < vl) & (block_start + block_size > vl)
        full_cnt, full_idx = grid_to_kv_layout(inside)
        part_cnt, part_idx = grid_to_kv_layout(straddle)
    return BlockMask.from_kv_blocks(
        part_cnt, part_idx, full_cnt, full_idx,
        BLOCK_SIZE=(block_size, block_size), mask_mod=mask_mod, seq_lengths=(length, length),
    )


def flex_block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: torch.Tensor,
    block_size: int,
    valid_len: torch.Tensor | None = None,
    compile: bool | None = None,
) -> torch.Tensor:
    """FlexAttention restricted to the key blocks selected in ``grid`` ([B, Hq, nq, nk]).

    Compiled (the CUDA default) it runs the fused kernel over the BlockMask's block lists. Eager
    flex_attention evaluates only ``mask_mod`` (the block lists are a promise to the fused kernel), so
    uncompiled the pattern is also spelled out per element (correct, slow: for checks only).
    """
    from torch.nn.attention.flex_attention import flex_attention

    L = q.shape[2]
    use_compile = q.is_cuda if compile is None else compile
    mm = None
    if not use_compile:
        mm = _grid_mask_mod(grid, block_size, None if valid_len is None else valid_len.to(q.device))
    bm = build_block_mask(grid, block_size, L, valid_len, mm, full_blocks=q.is_cuda or not use_compile)
    enable_gqa = q.shape[1] != k.shape[1]
    kernel_options = None
    if q.is_cuda and block_size < 128:
        kernel_options = {"BLOCK_M": block_size, "BLOCK_N": block_size}
    if use_compile:
        return _compiled_flex()(q, k, v, block_mask=bm, enable_gqa=enable_gqa, kernel_options=kernel_options)
    with warnings.catch_warnings():  # eager flex warns that it is unfused; here that is the point
        warnings.simplefilter("ignore")
        return flex_attention(q, k, v, block_mask=bm, enable_gqa=enable_gqa, kernel_options=kernel_options)


def fa4_block_sparse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: torch.Tensor, block_size: int
) -> torch.Tensor:
    """FlashAttention-4's block-sparse forward (Hopper/Blackwell) with the selected blocks as full blocks."""
    mod = fa4_module()
    if mod is None:
        raise RuntimeError("sparsed.kernel=fa4 needs flash_attn.cute (FlashAttention-4), not importable here")
    fn, BlockSparseTensorsTorch = mod[0], mod[1]
    counts, idx = grid_to_kv_layout(grid)
    bst = BlockSparseTensorsTorch(
        mask_block_cnt=torch.zeros_like(counts), mask_block_idx=idx,
        full_block_cnt=counts, full_block_idx=idx, block_size=(block_size, block_size),
    )
    out = _first(fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_sparse_tensors=bst))
    return out.transpose(1, 2)


def token_mask_from_grid(grid: torch.Tensor, block_size: int, length: int) -> torch.Tensor:
    """Expand a block grid to a token-level bool mask [B, H, L, L] (small inputs / checks only)."""
    tok = grid.repeat_interleave(block_size, dim=-2).repeat_interleave(block_size, dim=-1)
    return tok[..., :length, :length]


def sdpa_block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: torch.Tensor,
    block_size: int,
    valid_len: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked-SDPA version of the block-sparse attention: the slow, obviously-correct reference."""
    L = q.shape[2]
    mask = token_mask_from_grid(grid, block_size, L)
    if valid_len is not None:
        mask = mask & (torch.arange(L, device=q.device)[None, :] < valid_len[:, None])[:, None, None, :]
    n_rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), attn_mask=mask)


def block_sparse_attention(
    kernel: str,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grid: torch.Tensor,
    block_size: int,
    valid_len: torch.Tensor | None = None,
    compile: bool | None = None,
) -> torch.Tensor:
    if kernel == "flex":
        if not q.is_cuda and not compile:
            # On the CPU the default is the gather kernel: unmasked SDPA over each query block's kept key
            # blocks, no compilation. Eager flex is a per-element reference and compiled CPU flex costs a
            # few seconds of inductor build per sequence length for no speed advantage (bench_cpu_attention).
            return gather_block_sparse_attention(q, k, v, grid, block_size, valid_len)
        return flex_block_sparse(q, k, v, grid, block_size, valid_len, compile)
    if kernel == "fa4" and valid_len is None:
        return fa4_block_sparse(q, k, v, grid, block_size)
    if kernel in ("sdpa_mask", "fa4"):
        return sdpa_block_sparse(q, k, v, grid, block_size, valid_len)
    raise ValueError(f"unknown sparse kernel {kernel!r}; allowed: {', '.join(SPARSE_KERNELS)}")
