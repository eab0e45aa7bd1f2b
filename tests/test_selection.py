"""SparseD's block selection: reference importances, keep counts, block sizes at any length, paper mode."""

from __future__ import annotations

import math

import pytest
import torch

from sparsed.attention import GenerationInfo, build_method
from sparsed.attention.base import AttentionMethod
from sparsed.attention.kernels import dense_attention
from sparsed.attention.selection import SelectionRule, keep_count, select_blocks


class Recorder(AttentionMethod):
    """Dense attention that keeps each layer's post-RoPE q/k (to feed the selection code directly)."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.qk: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201
        self.qk[layer] = (q, k)
        return dense_attention(q, k, v, key_valid)


@pytest.mark.parametrize(("fixture", "scale_heads"), [("llada_tiny", True), ("dream_tiny", False)])
def test_reference_importances_match_the_original(request, fixture, scale_heads):
    model, exp = request.getfixturevalue(fixture)
    rec = Recorder()
    model(exp["sparsed_step9_input"], attention=rec)
    for layer in range(2):
        q, k = rec.qk[layer]
        rule = SelectionRule(block_size=16, select=0.5, compat="reference",
                             scale=1 / math.sqrt(4) if scale_heads else None)
        debug: dict = {}
        grid = select_blocks(q, k, 200, rule, debug=debug)
        assert debug["last"] == 13
        assert torch.equal(grid, exp[f"fine_mask_layer{layer}"])
        torch.testing.assert_close(debug["importance_all"], exp[f"block_importance_all_layer{layer}"], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(debug["importance_gen"], exp[f"block_importance_gen_layer{layer}"], rtol=1e-4, atol=1e-7)


def test_keep_counts():
    assert keep_count(15, 0.5, "reference") == 8  # int(7.5) + 1
    assert keep_count(2, 0.5, "reference") == 2
    assert keep_count(32, 0.3, "reference") == 10
    assert keep_count(32, 0.3, "paper") == 10  # ceil(9.6)
    assert keep_count(10, 0.3, "paper") == 3
    assert keep_count(10, 1.0, "paper") == 10
    assert keep_count(1, 0.01, "paper") == 1


@pytest.mark.parametrize("block_size", [16, 32, 64])
@pytest.mark.parametrize("length", [97, 200, 333])
@pytest.mark.parametrize("compat", ["reference", "paper"])
def test_any_length_and_block_size(block_size, length, compat):
    g = torch.Generator().manual_seed(length + block_size)
    q = torch.randn(1, 4, length, 32, generator=g)
    k = torch.randn(1, 2, length, 32, generator=g)  # GQA
    rule = SelectionRule(block_size=block_size, select=0.3, compat=compat)
    grid = select_blocks(q, k, length - 40, rule)
    nb = math.ceil(length / block_size)
    assert grid.shape == (1, 4, nb, nb)
    assert grid.any(-1).all()  # every query block keeps something


def test_paper_mode_isolated_counts_per_region():
    g = torch.Generator().manual_seed(0)
    L, bs, prompt = 640, 32, 512  # 16 prompt blocks, 4 generation blocks, boundary aligned
    q, k = torch.randn(1, 2, L, 16, generator=g), torch.randn(1, 2, L, 16, generator=g)
    grid = select_blocks(q, k, prompt, SelectionRule(block_size=bs, select=0.25, compat="paper"))
    assert (grid[..., :16].sum(-1) == 4).all()  # ceil(0.25 * 16)
    assert (grid[..., 16:].sum(-1) == 1).all()  # ceil(0.25 * 4)
    joint = select_blocks(q, k, prompt, SelectionRule(block_size=bs, select=0.25, compat="paper", isolated=False))
    assert (joint.sum(-1) == 5).all()  # one top-k over all 20 blocks


def test_selection_picks_the_heaviest_blocks():
    """Keys of block 3 match every query strongly: every row must keep block 3."""
    L, bs, D = 256, 32, 16
    q = torch.zeros(1, 1, L, D)
    q[..., 0] = 5.0
    k = torch.randn(1, 1, L, D) * 0.1
    k[:, :, 96:128, 0] = 5.0
    grid = select_blocks(q, k, 192, SelectionRule(block_size=bs, select=0.2, compat="paper"))
    assert grid[..., 3].all()


def test_pattern_is_built_once_and_reused_unless_reuse_false():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 96, 16, generator=g) for _ in range(3))
    for reuse, expected_builds in ((True, 1), (False, 1 + 10)):
        method = build_method("sparsed", dict(skip=0.2, select=0.3, block_size=16, reuse=reuse, compat="paper"))
        method.start(GenerationInfo(1, 96, 64, 32, 12))
        builds = 0
        original = method.build_pattern

        def counting(*a, _orig=original, **kw):
            nonlocal builds
            builds += 1
            return _orig(*a, **kw)

        method.build_pattern = counting
        for step in range(12):
            method.set_step(step)
            method.forward(0, q, k, v)
        # paper: int(12 * 0.2) = 2 dense steps, pattern from step 1, sparse from step 2 (10 sparse steps)
        assert builds == expected_builds
        assert method.report()["sparse_calls"] == 10


def test_skip_zero_is_sparse_from_the_first_step():
    method = build_method("sparsed", dict(skip=0.0, select=0.3, block_size=16, compat="paper"))
    assert method.schedule(32) == (0, 0)
    ref = build_method("sparsed", dict(skip=0.0, select=0.3, block_size=16, compat="reference"))
    assert ref.schedule(32) == (1, 2)  # the released code: two dense steps even at skip 0
    assert build_method("sparsed", dict(skip=0.2, compat="reference")).schedule(128) == (26, 27)
