"""The CPU block-sparse gather kernel and the flash-kernel block mass against float64 references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import sparsed.attention.kernels as kernels
import sparsed.attention.selection as selection
from sparsed.attention.cpu_block_sparse import build_plan, gather_block_sparse_attention
from sparsed.attention.estimator_cpu import block_mass_flash_cpu, flash_cpu_op
from sparsed.attention.kernels import block_sparse_attention, repeat_kv, sdpa_block_sparse, token_mask_from_grid
from sparsed.attention.selection import SelectionRule, block_mass_torch, select_blocks


def qkv(B: int, hq: int, hkv: int, L: int, D: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, h, L, D, generator=g) for h in (hq, hkv, hkv))


def masked_ref64(q, k, v, grid, bs, valid_len=None) -> torch.Tensor:
    L = q.shape[2]
    mask = token_mask_from_grid(grid, bs, L)
    if valid_len is not None:
        mask = mask & (torch.arange(L)[None, :] < valid_len[:, None])[:, None, None, :]
    n_rep = q.shape[1] // k.shape[1]
    out = F.scaled_dot_product_attention(q.double(), repeat_kv(k, n_rep).double(), repeat_kv(v, n_rep).double(),
                                         attn_mask=mask)
    return torch.where(mask.any(-1, keepdim=True), out, torch.zeros((), dtype=out.dtype))  # empty rows -> 0


def mass_ref64(q: torch.Tensor, k: torch.Tensor, scale: float, bs: int) -> torch.Tensor:
    """The block mass from the whole float64 softmax (small inputs only)."""
    n_rep = q.shape[1] // k.shape[1]
    p = torch.softmax(q.double() @ repeat_kv(k, n_rep).double().transpose(-1, -2) * scale, dim=-1)
    nq, nk = math.ceil(p.shape[-2] / bs), math.ceil(p.shape[-1] / bs)
    p = F.pad(p, (0, nk * bs - p.shape[-1], 0, nq * bs - p.shape[-2]))
    return p.reshape(*p.shape[:2], nq, bs, nk, bs).sum((3, 5))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.parametrize("bs", [16, 32, 64, 128])
@pytest.mark.parametrize(("hq", "hkv"), [(4, 4), (4, 2), (6, 1)])
@pytest.mark.parametrize("padded", [False, True])
def test_gather_kernel_matches_float64(bs, hq, hkv, padded):
    L = 3 * bs + bs // 2 + 3  # partial last block at every block size
    q, k, v = qkv(2, hq, hkv, L, 16, seed=bs + hq)
    nb = math.ceil(L / bs)
    grid = torch.rand(2, hq, nb, nb, generator=torch.Generator().manual_seed(bs)) < 0.45
    grid[..., 0] = True
    valid = torch.tensor([L, L - bs - 5]) if padded else None
    out = gather_block_sparse_attention(q, k, v, grid, bs, valid)
    assert out.shape == q.shape
    assert rel(out, masked_ref64(q, k, v, grid, bs, valid)) < 2e-6


def test_variable_counts_single_blocks_and_empty_rows():
    """Every count from 1 to nk, a row that keeps only the partial last block, and one with no valid key."""
    bs, L = 16, 16 * 7 + 5
    nb = math.ceil(L / bs)
    q, k, v = qkv(2, 2, 2, L, 8, seed=1)
    grid = torch.zeros(2, 2, nb, nb, dtype=torch.bool)
    for i in range(nb):
        grid[:, 0, i, : i + 1] = True  # counts 1 .. nb
        grid[:, 1, i, i] = True  # single block
    grid[:, 1, 0] = False
    grid[:, 1, 0, nb - 1] = True  # only the partial last block
    valid = torch.tensor([L, 40])
    # row 1 keeps blocks 3.. only for query block 5: all of them lie past its end (40 tokens)
    grid[1, 0, 5] = False
    grid[1, 0, 5, 3:] = True
    out = gather_block_sparse_attention(q, k, v, grid, bs, valid)
    ref = masked_ref64(q, k, v, grid, bs, valid)
    assert rel(out, ref) < 2e-6
    assert not out[1, 0, 5 * bs : 6 * bs].any()  # no valid key: zeros, as masked SDPA gives
    assert torch.allclose(out, sdpa_block_sparse(q, k, v, grid, bs, valid), atol=1e-5)


def test_sparsed_grid_and_tiny_budget_chunks():
    """A real selection (reference mode, variable counts per row), gathered in many small chunks."""
    bs, L = 32, 333
    q, k, v = qkv(1, 4, 2, L, 32, seed=7)
    grid = select_blocks(q, k, L - 64, SelectionRule(block_size=bs, select=0.3))
    assert len(set(grid.sum(-1).flatten().tolist())) > 1  # the counts do vary
    ref = masked_ref64(q, k, v, grid, bs)
    for budget in (1, 5000, 1 << 22):
        assert rel(gather_block_sparse_attention(q, k, v, grid, bs, budget_elems=budget), ref) < 2e-6


def test_plan_buckets_are_exact_and_bounded():
    bs, L = 16, 100  # last block holds 4 keys
    nb = math.ceil(L / bs)
    grid = torch.rand(1, 4, nb, nb, generator=torch.Generator().manual_seed(0)) < 0.5
    grid[..., 0] = True
    plan = build_plan(grid, bs, L, kv_heads=2)
    covered = torch.cat([b.rows for b in plan.buckets]).sort().values
    assert torch.equal(covered, torch.arange(4 * nb))  # every query block exactly once
    counts = grid.sum(-1).reshape(-1)
    for b in plan.buckets:
        assert (counts[b.rows] == b.kv_blocks.shape[1]).all()  # no padded block in any gathered row
        last = b.kv_blocks[:, -1] % nb
        assert b.n_keys == (b.kv_blocks.shape[1] - 1) * bs + (4 if bool((last == nb - 1).all()) else bs)
        heads = (b.rows // nb) % 4
        assert torch.equal(b.kv_blocks // nb, (heads // 2)[:, None].expand_as(b.kv_blocks))  # GQA: shared head


def test_plan_cache_follows_in_place_changes():
    bs, L = 16, 64
    q, k, v = qkv(1, 2, 2, L, 8, seed=3)
    grid = torch.ones(1, 2, 4, 4, dtype=torch.bool)
    first = gather_block_sparse_attention(q, k, v, grid, bs)
    grid[..., 1:] = False  # same object, new contents
    second = gather_block_sparse_attention(q, k, v, grid, bs)
    assert rel(second, masked_ref64(q, k, v, grid, bs)) < 2e-6
    assert not torch.allclose(first, second)


def test_flex_on_cpu_runs_the_gather_kernel_not_masked_sdpa(monkeypatch):
    def no_masked_sdpa(*a, **kw):
        raise AssertionError("the CPU default must not build an L x L mask")

    monkeypatch.setattr(kernels, "sdpa_block_sparse", no_masked_sdpa)
    bs, L = 32, 150
    q, k, v = qkv(1, 4, 2, L, 16, seed=4)
    grid = torch.rand(1, 4, 5, 5, generator=torch.Generator().manual_seed(4)) < 0.5
    grid[..., 0] = True
    out = block_sparse_attention("flex", q, k, v, grid, bs, valid_len=torch.tensor([140]))
    assert rel(out, masked_ref64(q, k, v, grid, bs, torch.tensor([140]))) < 2e-6


@pytest.mark.skipif(flash_cpu_op() is None, reason="this PyTorch has no CPU flash-attention op")
@pytest.mark.parametrize(("L", "Lk", "hq", "hkv", "D", "bs"), [
    (177, 177, 4, 2, 16, 16),  # 12 key blocks, one call
    (333, 333, 2, 1, 8, 16),  # 21 key blocks over 3 calls of 8: log-sum-exp merge
    (300, 90, 4, 4, 32, 64),  # fewer keys than queries (the generation pass)
    (200, 200, 2, 2, 32, 128),
])
def test_flash_block_mass_matches_float64(L, Lk, hq, hkv, D, bs):
    g = torch.Generator().manual_seed(L + Lk)
    q = torch.randn(2, hq, L, D, generator=g) * 2  # peaked softmax: large dynamic range per row
    k = torch.randn(2, hkv, Lk, D, generator=g)
    ref = mass_ref64(q, k, 0.3, bs)
    mass = block_mass_flash_cpu(q, k, 0.3, bs)
    assert mass.shape == ref.shape
    torch.testing.assert_close(mass.double(), ref, rtol=1e-5, atol=1e-6)
    rows_in_block = torch.full((math.ceil(L / bs),), float(bs))
    rows_in_block[-1] = L - (len(rows_in_block) - 1) * bs
    torch.testing.assert_close(mass.sum(-1).double(), rows_in_block.double().expand_as(mass.sum(-1)), rtol=1e-5, atol=0)
    # the explicit float32 path agrees with the same reference (it is what the fused path replaces)
    torch.testing.assert_close(block_mass_torch(q, k, 0.3, bs).double(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compat", ["reference", "paper"])
def test_selection_is_the_same_with_either_block_mass(monkeypatch, compat):
    g = torch.Generator().manual_seed(11)
    q, k = torch.randn(1, 4, 517, 32, generator=g), torch.randn(1, 2, 517, 32, generator=g)
    rule = SelectionRule(block_size=32, select=0.3, compat=compat)
    fused = select_blocks(q, k, 517 - 96, rule)
    monkeypatch.setattr(selection, "flash_mass_supported", lambda *a: False)
    explicit = select_blocks(q, k, 517 - 96, rule)
    assert torch.equal(fused, explicit)


def test_compiled_flex_builds_on_cpu_with_partial_block_lists():
    """Inductor's CPU flex template fails on full-block-only masks; the partial-block layout must build."""
    pytest.importorskip("torch._inductor")
    bs, L = 32, 150
    q, k, v = qkv(1, 2, 2, L, 16, seed=8)
    grid = torch.rand(1, 2, 5, 5, generator=torch.Generator().manual_seed(8)) < 0.5
    grid[..., 0] = True
    valid = torch.tensor([130])
    try:
        out = kernels.flex_block_sparse(q, k, v, grid, bs, valid, compile=True)
    except Exception as exc:  # noqa: BLE001 - no C++ toolchain is a skip, a template error is a failure
        if "CppCompileError" in type(exc).__name__ + str(exc) and "kv_indices" not in str(exc):
            pytest.skip(f"no working C++ compiler for inductor: {type(exc).__name__}")
        raise
    assert rel(out, masked_ref64(q, k, v, grid, bs, valid)) < 2e-6
