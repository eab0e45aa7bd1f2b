"""Attention methods against explicit float64 references, padding handling, and the method registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsed.attention import GenerationInfo, build_method
from sparsed.attention.kernels import block_sparse_attention, repeat_kv, token_mask_from_grid
from sparsed.attention.padding import left_align, restore_left_padding
from sparsed.config_errors import ConfigError


def ref64(q, k, v, mask=None):
    n_rep = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q.double(), repeat_kv(k, n_rep).double(), repeat_kv(v, n_rep).double(),
                                          attn_mask=mask)


def rand_qkv(L, hq=4, hkv=2, d=16, seed=0, b=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, hq, L, d, generator=g), torch.randn(b, hkv, L, d, generator=g),
            torch.randn(b, hkv, L, d, generator=g))


def rel(a, b):
    return float((a.double() - b).norm() / b.norm())


def test_sliding_window_matches_explicit_mask():
    q, k, v = rand_qkv(150)
    m = build_method("sliding_window", {"ws": 40})
    m.start(GenerationInfo(1, 150, 120, 30, 4))
    out = m.forward(0, q, k, v)
    i = torch.arange(150)
    mask = (i[:, None] - i[None, :]).abs() <= 20
    assert rel(out, ref64(q, k, v, mask)) < 1e-5
    assert abs(m.report()["density_mean"] - mask.float().mean().item()) < 1e-6


def test_streaming_llm_matches_explicit_mask():
    q, k, v = rand_qkv(200)
    m = build_method("streaming_llm", {"ws": 40, "sink_ratio": 0.1})
    m.start(GenerationInfo(1, 200, 170, 30, 4))
    out = m.forward(0, q, k, v)
    i = torch.arange(200)
    mask = ((i[:, None] - i[None, :]).abs() <= 20) | (i[None, :] < 20)
    assert rel(out, ref64(q, k, v, mask)) < 1e-5
    assert abs(m.report()["density_mean"] - mask.float().mean().item()) < 1e-6


@pytest.mark.parametrize("kernel", ["flex", "sdpa_mask"])
@pytest.mark.parametrize("block", [16, 32, 64])
def test_block_sparse_kernels_match_float64(kernel, block):
    L = 177  # not a multiple of any block size
    q, k, v = rand_qkv(L, seed=block)
    nb = -(-L // block)
    g = torch.Generator().manual_seed(3)
    grid = torch.rand(1, 4, nb, nb, generator=g) < 0.4
    grid[..., 0] = True
    out = block_sparse_attention(kernel, q, k, v, grid, block)
    mask = token_mask_from_grid(grid, block, L)
    assert rel(out, ref64(q, k, v, mask)) < 1e-5


def test_block_sparse_with_row_padding():
    L, block = 130, 32
    q, k, v = rand_qkv(L, b=2, seed=5)
    nb = -(-L // block)
    grid = torch.ones(2, 4, nb, nb, dtype=torch.bool)
    grid[..., 1] = False
    valid = torch.tensor([L, 100])
    out = block_sparse_attention("flex", q, k, v, grid, block, valid_len=valid)
    mask = token_mask_from_grid(grid, block, L) & (torch.arange(L)[None, :] < valid[:, None])[:, None, None, :]
    assert rel(out, ref64(q, k, v, mask)) < 1e-5


def test_left_align_round_trip():
    x = torch.arange(2 * 1 * 6 * 1).reshape(2, 1, 6, 1).float()
    pad = torch.tensor([0, 2])
    aligned = left_align(x, pad)
    assert aligned[1, 0, :4, 0].tolist() == [8.0, 9.0, 10.0, 11.0]
    assert torch.equal(restore_left_padding(aligned, pad), x)


@pytest.mark.parametrize("name", ["sparsed", "sliding_window", "streaming_llm"])
def test_left_padding_does_not_change_a_rows_output(name):
    """A row padded on the left gets the output it gets alone (positions, blocks and sinks follow its tokens)."""
    settings = {"sparsed": dict(skip=0.0, select=0.4, block_size=16, compat="paper"),
                "sliding_window": {"ws": 24}, "streaming_llm": {"ws": 24, "sink_ratio": 0.1}}[name]
    L, pad = 90, 13
    q, k, v = rand_qkv(L, seed=11)
    alone = build_method(name, dict(settings))
    alone.start(GenerationInfo(1, L, L - 20, 20, 8))
    alone.set_step(3)
    ref_out = alone.forward(0, q, k, v)
    # batch: row 0 = the same tokens after `pad` padding tokens, row 1 = an unpadded other sequence
    q2, k2, v2 = rand_qkv(L + pad, seed=12)
    qb, kb, vb = (torch.cat([F.pad(t, (0, 0, pad, 0)), t2], 0) for t, t2 in ((q, q2), (k, k2), (v, v2)))
    batched = build_method(name, dict(settings))
    batched.start(GenerationInfo(2, L + pad, L + pad - 20, 20, 8, pad_counts=torch.tensor([pad, 0])))
    batched.set_step(3)
    valid = torch.ones(2, L + pad, dtype=torch.bool)
    valid[0, :pad] = False
    out = batched.forward(0, qb, kb, vb, valid)
    assert torch.allclose(out[0, :, pad:], ref_out[0], atol=1e-5)


def test_unknown_method_and_bad_settings_are_named():
    with pytest.raises(ConfigError, match="attention.name='nope'.*dense.*sparsed"):
        build_method("nope")
    with pytest.raises(ConfigError, match="sliding_window.window is not a setting of sliding_window"):
        build_method("sliding_window", {"window": 3})
    with pytest.raises(ConfigError, match="dense.backend='magic'"):
        build_method("dense", {"backend": "magic"})


@pytest.mark.parametrize("block", [16, 64])
def test_block_mask_is_the_grid(block):
    """The BlockMask built from the block lists (what the fused kernel reads) equals the selection."""
    from sparsed.attention.kernels import build_block_mask

    L = 200
    nb = -(-L // block)
    grid = torch.rand(2, 3, nb, nb, generator=torch.Generator().manual_seed(block)) < 0.5
    bm = build_block_mask(grid, block, L)
    assert torch.equal(bm.to_dense().bool(), grid)
    valid = torch.tensor([L, 90])
    padded = build_block_mask(grid, block, L, valid)
    dense = padded.to_dense().bool()
    ends = -(-valid // block)
    for b in range(2):
        assert torch.equal(dense[b, ..., : ends[b]], grid[b, ..., : ends[b]])
        assert not dense[b, ..., ends[b]:].any()


def test_eager_flex_matches_float64():
    from sparsed.attention.kernels import flex_block_sparse

    L, block = 150, 32
    q, k, v = rand_qkv(L, seed=9)
    nb = -(-L // block)
    grid = torch.rand(1, 4, nb, nb, generator=torch.Generator().manual_seed(1)) < 0.5
    grid[..., 0] = True
    out = flex_block_sparse(q, k, v, grid, block, compile=False)
    assert rel(out, ref64(q, k, v, token_mask_from_grid(grid, block, L))) < 1e-5
