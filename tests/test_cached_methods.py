"""Quest, LoSA and SparseD on the cache: exactness against float64 references, the page bound, the
log-sum-exp merge, the KV-density bookkeeping, and end-to-end runs on a prefix cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsed.attention import GenerationInfo, Layout, StepInfo, build_method
from sparsed.attention.dense_kernels import repeat_kv
from sparsed.attention.lse import attention_lse, merge
from sparsed.attention.pages import build_pages, upper_bounds
from sparsed.cache import build_cache
from sparsed.sampling.llada import generate
from tests.test_samplers import tiny

L, LO, HQ, HKV, D = 96, 70, 4, 2, 16  # canvas, block start (rows 70..95 are recomputed), heads, head dim


def ref(q, k, v, mask=None):
    n = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q.double(), repeat_kv(k, n).double(), repeat_kv(v, n).double(), attn_mask=mask)


def qkv(seed, b=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, HQ, L, D, generator=g, dtype=dtype), torch.randn(b, HKV, L, D, generator=g, dtype=dtype),
            torch.randn(b, HKV, L, D, generator=g, dtype=dtype))


def test_lse_merge_of_disjoint_key_sets_is_attention_over_their_union():
    q, k, v = qkv(0)
    o1, l1 = attention_lse(q, k[:, :, :40], v[:, :, :40])
    o2, l2 = attention_lse(q, k[:, :, 40:], v[:, :, 40:])
    out, lse = merge(o1, l1, o2, l2)
    torch.testing.assert_close(out, ref(q, k, v), atol=1e-12, rtol=0)
    s = torch.matmul(q, repeat_kv(k, 2).transpose(-1, -2)) / D**0.5
    torch.testing.assert_close(lse, torch.logsumexp(s, -1), atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_lse_with_masks_and_empty_rows(dtype):
    q, k, v = qkv(1, b=2, dtype=dtype)
    mask = torch.rand(2, HQ, L, L, generator=torch.Generator().manual_seed(2)) > 0.5
    mask[0, 1, 3] = False  # a query with no key: output 0, LSE -inf
    out, lse = attention_lse(q, k, v, mask)
    want = ref(q, k, v, mask)
    ok = mask.any(-1)
    torch.testing.assert_close(out.double()[ok], want[ok], atol=1e-5 if dtype == torch.float32 else 1e-12, rtol=0)
    assert float(out[0, 1, 3].abs().max()) == 0.0 and lse[0, 1, 3] == -torch.inf


def test_quest_page_bound_is_an_upper_bound():
    for seed in range(5):
        q, k, _ = qkv(10 + seed)
        valid = torch.ones(1, L, dtype=torch.bool)
        valid[0, :5] = False  # padding keys are outside every page's bounds
        pages = build_pages(k, ((0, 37), (50, 90)), 16, valid)
        bounds = upper_bounds(q, pages)  # [B, Hq, Lq, nP]
        exact = torch.matmul(q, repeat_kv(k, 2).transpose(-1, -2))  # [B, Hq, Lq, L]
        for p in range(pages.n_pages):
            s, n = int(pages.start[p]), int(pages.length[p])
            rows = torch.arange(s, s + n)
            rows = rows[valid[0, rows]]
            if len(rows):
                assert bool((exact[..., rows].amax(-1) <= bounds[..., p] + 1e-9).all())


def _call(method, q, k, v, step, block=0, static=((0, LO),), fresh=(LO, L), valid=None):
    """One layer call of a block cache step: step 0 is the refresh (full canvas), later steps the fresh rows."""
    where = StepInfo(step=step, block=block, block_lo=LO, block_hi=L, step_in_block=step, refresh=step == 0,
                     cached=step > 0, fresh=fresh, static=static)
    method.set_step(step, where)
    if step == 0:
        return method.forward(0, q, k, v, valid)
    lo, hi = fresh
    lay = Layout(torch.arange(lo, hi)[None].expand(q.shape[0], -1), L, (lo, hi))
    return method.forward(0, q[:, :, lo:hi], k, v, valid, lay)


@pytest.mark.parametrize(("name", "settings"), [
    ("quest", {"budget": 4096}), ("quest", {"budget": 4096, "attend": "own", "gqa": "group_mean"}),
    ("losa", {"budget": 4096, "active_fraction": 1.0}), ("losa", {"budget": 4096, "active": 1000, "update": "keep"}),
    ("sparsed_cache", {"select": 1.0, "block_size": 16}), ("sparsed_cache", {"budget": 4096, "isolated": False}),
])
def test_full_budget_equals_dense_cached_attention(name, settings):
    """Everything selected (and, for LoSA, every token active) is exactly dense attention, step after step."""
    m = build_method(name, settings)
    m.start(GenerationInfo(1, L, 40, L - 40, 4))
    q0, k0, v0 = qkv(20)
    _call(m, q0, k0, v0, 0)
    for step in (1, 2, 3):
        q, k, v = qkv(20 + step)
        k[:, :, :LO], v[:, :, :LO] = k0[:, :, :LO], v0[:, :, :LO]  # the cached prefix stays fixed in a block
        out = _call(m, q, k, v, step)
        torch.testing.assert_close(out, ref(q, k, v)[:, :, LO:], atol=1e-10, rtol=0)
    rep = m.report()
    assert rep["kv_density"] == 1.0


def test_dual_cache_layout_splits_prefix_and_suffix():
    m = build_method("quest", {"budget": 4096})
    m.start(GenerationInfo(1, L, 40, L - 40, 4))
    q, k, v = qkv(30)
    static, fresh = ((0, LO), (80, L)), (LO, 80)
    _call(m, q, k, v, 0, static=static, fresh=fresh)
    out = _call(m, q, k, v, 1, static=static, fresh=fresh)
    torch.testing.assert_close(out, ref(q, k, v)[:, :, LO:80], atol=1e-10, rtol=0)


def test_losa_reuses_stable_tokens_and_loads_fewer_keys_than_quest():
    q0, k0, v0 = qkv(40)
    losa = build_method("losa", {"budget": 16, "active": 2})
    quest = build_method("quest", {"budget": 16})
    for m in (losa, quest):
        m.start(GenerationInfo(1, L, 40, L - 40, 4))
        _call(m, q0, k0, v0, 0)
    q = q0.clone()
    q[:, :, LO + 3] += 3.0  # two tokens change a lot, the rest a little
    q[:, :, LO + 9] -= 3.0
    q[:, :, LO:] += 1e-3 * torch.randn(q[:, :, LO:].shape, generator=torch.Generator().manual_seed(1), dtype=q.dtype)
    out = _call(losa, q, k0, v0, 1)
    _call(quest, q, k0, v0, 1)
    stable = [i for i in range(L - LO) if i not in (3, 9)]
    # a stable token's output is its first step's prefix part merged with today's in-block part
    o_p, l_p = attention_lse(q0[:, :, LO:], k0[:, :, :LO], v0[:, :, :LO])
    o_b, l_b = attention_lse(q[:, :, LO:], k0[:, :, LO:], v0[:, :, LO:])
    want, _ = merge(o_p, l_p, o_b, l_b)
    torch.testing.assert_close(out[:, :, stable], want[:, :, stable], atol=1e-10, rtol=0)
    assert not torch.allclose(out[:, :, 3], want[:, :, 3])
    assert losa.report()["kv_density"] < quest.report()["kv_density"]
    assert losa.report()["active_tokens_mean"] == 2


def test_methods_that_need_a_block_cache_are_refused_elsewhere():
    from hydra import compose, initialize_config_dir

    from sparsed.config import register_schemas, validate
    from sparsed.config_errors import ConfigError
    from tests.test_config import CONFIGS

    register_schemas()
    for att in ("losa", "quest", "sparsed_cache"):
        for cache in ("none", "dkv_decode"):
            with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
                cfg = compose(config_name="config", overrides=[f"attention={att}", f"cache={cache}"])
            with pytest.raises(ConfigError, match=f"attention={att} sparsifies a block's cached keys"):
                validate(cfg)


@pytest.mark.parametrize(("name", "settings"), [
    ("losa", {"active_fraction": 1.0, "budget": 100000}), ("quest", {"budget": 100000}),
    ("sparsed_cache", {"select": 1.0, "block_size": 8}),
])
def test_full_budget_generation_equals_dense_on_a_prefix_cache(name, settings):
    model = tiny("llada")
    p = torch.randint(0, 290, (1, 40), generator=torch.Generator().manual_seed(3))
    kw = dict(steps=8, gen_length=16, block_length=8)
    dense = generate(model, p, cache=build_cache("prefix"), attention=build_method("dense"), **kw)
    sparse = generate(model, p, cache=build_cache("prefix"), attention=build_method(name, settings, model.args.facts), **kw)
    assert torch.equal(dense.sequences, sparse.sequences)


def test_small_budget_changes_attention_but_still_generates():
    model = tiny("llada")
    p = torch.randint(0, 290, (1, 60), generator=torch.Generator().manual_seed(4))
    m = build_method("losa", {"budget": 16, "active": 2})
    out = generate(model, p, steps=8, gen_length=16, block_length=8, cache=build_cache("dual"), attention=m)
    rep = m.report()
    assert 0 < rep["kv_density"] < 1 and rep["kv_density"] < rep["kv_density_with_dense"] <= 1
    assert set(rep["kv_density_per_layer"]) == {"0", "1"}
    assert not (out.generated == model.args.mask_token_id).any()


def _tiny_sdar():
    from sparsed.models.loading import random_model
    from sparsed.models.sdar import args_from_config

    args = args_from_config({"model_type": "sdar", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                             "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 300,
                             "mask_token_id": 299})
    model = random_model(args, device="cpu", dtype="fp32", seed=5)
    with torch.no_grad():  # sharper logits than N(0, 0.02): decisions are not near-ties
        model.head.weight.mul_(20)
    return model


@pytest.mark.parametrize(("name", "settings"), [("losa", {"active_fraction": 1.0, "budget": 100000}),
                                                 ("quest", {"budget": 100000}),
                                                 ("sparsed_cache", {"select": 1.0, "block_size": 4})])
def test_cached_methods_on_block_diffusion_with_full_budget_equal_dense(name, settings):
    """On SDAR's exact prefix cache the static keys are the finished blocks; everything selected is dense."""
    from sparsed.sampling.sdar import generate as sdar_generate

    model = _tiny_sdar()
    p = torch.randint(0, 290, (1, 45), generator=torch.Generator().manual_seed(6))
    kw = dict(steps=16, gen_length=16, block_length=4)
    dense = sdar_generate(model, p, cache=build_cache("block_prefix"), attention=build_method("dense"), **kw)
    m = build_method(name, settings, model.args.facts)
    sparse = sdar_generate(model, p, cache=build_cache("block_prefix"), attention=m, **kw)
    assert torch.equal(dense.sequences, sparse.sequences)
    assert m.report()["kv_density"] == 1.0


def test_losa_on_block_diffusion_loads_a_fraction_of_the_finished_blocks():
    from sparsed.sampling.sdar import generate as sdar_generate

    model = _tiny_sdar()
    p = torch.randint(0, 290, (1, 120), generator=torch.Generator().manual_seed(7))
    m = build_method("losa", {"budget": 16, "active": 1}, model.args.facts)
    out = sdar_generate(model, p, steps=16, gen_length=16, block_length=4, cache=build_cache("block_prefix"), attention=m)
    assert 0 < m.report()["kv_density"] < 0.5
    assert not (out.generated == 299).any()


@pytest.mark.parametrize("n_rep", [1, 4])
def test_sparsed_cache_gathers_only_the_kept_blocks_and_computes_the_masked_function(n_rep):
    """The gathered kernel against the plain formulation: a token mask over every cached key."""
    from sparsed.attention.lse import attention_lse
    from sparsed.attention.methods.sparsed_cache import gathered_block_attention, key_blocks

    g = torch.Generator().manual_seed(n_rep)
    B, Hkv, D, bs = 2, 2, 8, 8
    Hq, Lk = Hkv * n_rep, 90
    static = ((0, 37), (50, 83))  # two regions with partial last blocks, a gap (the current block) between
    blocks = key_blocks(static, bs, prompt_length=37, device=torch.device("cpu"))
    q = torch.randn(B, Hq, 21, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, Hkv, Lk, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, Hkv, Lk, D, generator=g, dtype=torch.float64)
    key_valid = torch.ones(B, Lk, dtype=torch.bool)
    key_valid[1, :5] = False  # a left-padded row
    grid = torch.rand(B, Hq, 3, len(blocks.start), generator=g) < 0.35
    grid[0, 0, 0] = False  # a query block that keeps nothing
    out, lse, union = gathered_block_attention(q, k, v, key_valid, blocks, grid, bs)

    idx = torch.cat([torch.arange(int(s), int(s + n)) for s, n in zip(blocks.start, blocks.length, strict=True)])
    bid = torch.repeat_interleave(torch.arange(len(blocks.start)), blocks.length)
    qb = torch.arange(q.shape[2]) // bs
    mask = grid[:, :, qb][..., bid] & key_valid[:, None, None, idx]
    want, want_lse = attention_lse(q, k[:, :, idx], v[:, :, idx], mask)
    torch.testing.assert_close(out, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-12, rtol=0)
    assert torch.equal(union, grid.reshape(B, Hkv, n_rep, 3, -1).any(2).any(2))
    assert torch.all(out[0, 0, :bs] == 0) and torch.all(torch.isneginf(lse[0, 0, :bs]))
