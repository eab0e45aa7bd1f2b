"""The KV cache and the cache strategies beyond the goldens: exactness of cached forwards, refreshing at
every step, padded batches, dense attention with Lq != Lk, and the run/result plumbing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sparsed.attention import build_method
from sparsed.attention.base import Layout
from sparsed.attention.dense_kernels import (
    available_dense_backends,
    dense_attention,
    flash_attention,
    grouped_query_sdpa,
    pack_varlen,
    repeat_kv,
)
from sparsed.cache import build_cache
from sparsed.models.kv_cache import KVCache
from sparsed.sampling.dream import block_generate, diffusion_generate
from sparsed.sampling.llada import generate
from tests.test_samplers import tiny


def _prompt(n: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 290, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_a_cached_forward_equals_the_full_forward(arch):
    """Rows recomputed against a cache filled from the same canvas give the full forward's hidden states."""
    model = tiny(arch)
    x = _prompt(60, 1)
    full = model.hidden_states(x)
    kv = KVCache(60)
    assert torch.equal(model.hidden_states(x, cache=kv), full)
    span = model.hidden_states(x, rows=(25, 60), cache=kv)
    torch.testing.assert_close(span, full[:, 25:60], atol=2e-5, rtol=0)
    idx = torch.tensor([[3, 10, 11, 40, 59]])
    torch.testing.assert_close(model.hidden_states(x, rows=idx, cache=kv), full[:, idx[0]], atol=2e-5, rtol=0)


def test_a_cached_forward_uses_the_cache_for_the_other_rows():
    model = tiny("llada")
    x = _prompt(40, 2)
    kv = KVCache(40)
    model.hidden_states(x, cache=kv)
    y = x.clone()
    y[:, :10] = (y[:, :10] + 7) % 290  # the cached prefix no longer matches the canvas
    stale = model.hidden_states(y, rows=(30, 40), cache=kv)
    torch.testing.assert_close(stale, model.hidden_states(x)[:, 30:40], atol=2e-5, rtol=0)
    assert not torch.allclose(stale, model.hidden_states(y)[:, 30:40], atol=1e-3)


def _llada(model, prompt, cache=None, **kw):
    kw = {"steps": 8, "gen_length": 16, "block_length": 8} | kw
    return generate(model, prompt, cache=cache, **kw)


def _dream(model, prompt, cache=None, blocks=None, **kw):
    if blocks:
        return block_generate(model, prompt, max_new_tokens=16, steps=8, block_length=blocks, cache=cache, **kw)
    return diffusion_generate(model, prompt, max_new_tokens=16, steps=8, cache=cache, **kw)


@pytest.mark.parametrize(
    ("name", "settings", "extra"),
    [("dkv_decode", {"refresh_interval": 1}, {}),
     ("dkv_greedy", {"refresh_interval": 1, "window": 2}, {"remasking": "random_fixed"})],
)
def test_refreshing_every_step_is_the_uncached_sampler_llada(name, settings, extra):
    model = tiny("llada")
    p = _prompt(30, 3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    plain = _llada(model, p, generator=g(), **extra)
    cached = _llada(model, p, build_cache(name, settings, model.args.facts), generator=g(), **extra)
    assert torch.equal(plain.sequences, cached.sequences)
    assert all(s.forward == "full" for s in cached.steps)


def test_refreshing_every_step_is_the_uncached_sampler_dream():
    model = tiny("dream")
    p = _prompt(30, 4)
    plain = _dream(model, p, alg="maskgit_plus")
    decode = _dream(model, p, build_cache("dkv_decode", {"refresh_interval": 1}, model.args.facts), alg="maskgit_plus")
    assert torch.equal(plain.sequences, decode.sequences)
    prefill = _dream(model, p, build_cache("dkv_prefill", facts=model.args.facts), alg="maskgit_plus")
    pd1 = _dream(model, p, build_cache("dkv_pd", {"refresh_interval": 1}, model.args.facts), alg="maskgit_plus")
    assert torch.equal(prefill.sequences, pd1.sequences)  # pd refreshed every step = prefill (the README's check)


def _pad_batch(short: torch.Tensor, long: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :pad] = 0
    return batch, mask


LLADA_CASES = [
    ("prefix", {}, {}), ("dual", {}, {}), ("prefix", {}, {"threshold": 0.3}), ("dual", {}, {"factor": 1.0}),
    ("dkv_decode", {"refresh_interval": 3}, {}),
    ("dkv_greedy", {"refresh_interval": 2, "window": 2}, {"remasking": "random_fixed"}),
]


@pytest.mark.parametrize(("name", "settings", "gen"), LLADA_CASES)
def test_a_padded_batch_gives_each_row_what_it_gets_alone_llada(name, settings, gen):
    model = tiny("llada")
    short, long = _prompt(21, 5), _prompt(33, 6)
    make = lambda: build_cache(name, settings, model.args.facts)  # noqa: E731
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    alone = [_llada(model, p, make(), generator=g(), **gen).generated[0] for p in (short, long)]
    batch, mask = _pad_batch(short, long)
    if name == "dkv_greedy":  # each row's random order comes from its own draw: compare row by row
        out = [_llada(model, p, make(), generator=g(), **gen).generated[0] for p in (short, long)]
    else:
        out = _llada(model, batch, make(), attention_mask=mask, generator=g(), **gen).generated
    assert torch.equal(out[0], alone[0]) and torch.equal(out[1], alone[1])


@pytest.mark.parametrize(
    ("name", "settings", "blocks", "alg"),
    [("prefix", {}, 8, "entropy"), ("dual", {}, 8, "confidence_threshold"), ("dkv_decode", {"refresh_interval": 3},
     None, "maskgit_plus"), ("dkv_prefill", {}, None, "entropy"), ("dkv_pd", {"refresh_interval": 2}, None, "maskgit_plus")],
)
def test_a_padded_batch_gives_each_row_what_it_gets_alone_dream(name, settings, blocks, alg):
    model = tiny("dream")
    short, long = _prompt(21, 8), _prompt(33, 9)
    make = lambda: build_cache(name, settings, model.args.facts)  # noqa: E731
    kw = {"alg": alg, "threshold": 0.2 if alg == "confidence_threshold" else None}
    alone = [_dream(model, p, make(), blocks, **kw).generated[0] for p in (short, long)]
    batch, mask = _pad_batch(short, long)
    out = _dream(model, batch, make(), blocks, attention_mask=mask, **kw).generated
    assert torch.equal(out[0], alone[0]) and torch.equal(out[1], alone[1])


def test_threshold_decoding_commits_several_tokens_and_needs_fewer_steps():
    model = tiny("llada")
    p = _prompt(30, 10)
    fixed = _llada(model, p, build_cache("prefix"))
    fast = _llada(model, p, build_cache("prefix"), threshold=0.05)
    assert fast.nfe < fixed.nfe and max(s.committed for s in fast.steps) > 1
    assert not (fast.generated == model.args.mask_token_id).any()


def test_cached_steps_compute_only_the_planned_rows():
    model = tiny("llada")
    out = _llada(model, _prompt(40, 11), build_cache("dual"))
    assert [s.forward for s in out.steps[:4]] == ["full", "cached", "cached", "cached"]
    assert [s.rows for s in out.steps[:2]] == [56, 8]
    assert out.cache_bytes == 2 * 2 * 56 * 64 * 4  # layers x (K, V) x rows x (heads * head_dim) x fp32


# -- dense attention with Lq != Lk, GQA and padding ---------------------------------------------------
def _ref(q, k, v, mask=None):
    n = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q.double(), repeat_kv(k, n).double(), repeat_kv(v, n).double(),
                                          attn_mask=mask)


@pytest.mark.parametrize("backend", available_dense_backends())
def test_dense_attention_with_fewer_queries_gqa_and_padding(backend):
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 8, 5, 16, generator=g), torch.randn(2, 2, 37, 16, generator=g), torch.randn(2, 2, 37, 16,
                                                                                                       generator=g)
    valid = torch.ones(2, 37, dtype=torch.bool)
    valid[0, :9] = False  # left padding of row 0
    out = dense_attention(q, k, v, valid, backend=backend)
    torch.testing.assert_close(out.double(), _ref(q, k, v, valid[:, None, None, :]), atol=1e-5, rtol=0)


def test_grouped_query_heads_without_repeating_kv():
    """The GQA path of backends without enable_gqa (cuDNN, memory-efficient) folds query heads into rows."""
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(2, 6, 4, 8, generator=g), torch.randn(2, 2, 11, 8, generator=g), torch.randn(2, 2, 11, 8,
                                                                                                      generator=g)
    mask = torch.rand(2, 1, 4, 11, generator=g) > 0.3
    mask[..., 0] = True
    torch.testing.assert_close(grouped_query_sdpa(q, k, v, mask, None).double(), _ref(q, k, v, mask), atol=1e-5, rtol=0)
    pad = torch.ones(2, 1, 1, 11, dtype=torch.bool)
    pad[0, ..., :3] = False
    torch.testing.assert_close(grouped_query_sdpa(q, k, v, pad, None).double(), _ref(q, k, v, pad), atol=1e-5, rtol=0)


def test_block_causal_layout_masks_later_blocks():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 4, 12, 8, generator=g) for _ in range(3))
    lay = Layout(torch.arange(12)[None], 12, (0, 12), block=4)
    m = build_method("dense")
    out = m.forward(0, q, k, v, None, lay)
    i = torch.arange(12)
    mask = (i[None, :] // 4) <= (i[:, None] // 4)
    torch.testing.assert_close(out.double(), _ref(q, k, v, mask), atol=1e-5, rtol=0)
    decode = Layout(torch.arange(8, 12)[None], 12, (8, 12), block=4)
    assert decode.key_mask(None) is None  # the last block sees every key: no mask at all


def test_varlen_packing_for_flash_kernels_matches_padded_attention():
    """FA3/FA4 take no mask: a padded batch is packed for their varlen entry point. Checked with a stand-in."""
    g = torch.Generator().manual_seed(2)

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None):  # noqa: ANN001, ANN202
        outs = []
        for b in range(len(cu_seqlens_q) - 1):
            qs, ks = slice(cu_seqlens_q[b], cu_seqlens_q[b + 1]), slice(cu_seqlens_k[b], cu_seqlens_k[b + 1])
            o = F.scaled_dot_product_attention(q[qs].transpose(0, 1)[None], k[ks].transpose(0, 1)[None],
                                               v[ks].transpose(0, 1)[None], enable_gqa=True)
            outs.append(o[0].transpose(0, 1))
        return torch.cat(outs)

    q, k, v = torch.randn(3, 4, 6, 8, generator=g), torch.randn(3, 2, 20, 8, generator=g), torch.randn(3, 2, 20, 8,
                                                                                                       generator=g)
    valid = torch.ones(3, 20, dtype=torch.bool)
    valid[1, :5] = False
    valid[2, :11] = False
    out = flash_attention("fa3", q, k, v, valid, None, functions=(lambda *a, **kw: None, varlen))
    torch.testing.assert_close(out.double(), _ref(q, k, v, valid[:, None, None, :]), atol=1e-5, rtol=0)
    qq = torch.randn(3, 4, 20, 8, generator=g)  # a full canvas: padding rows are dropped from the queries
    *_, keep = pack_varlen(qq, k, v, valid)
    assert torch.equal(keep, valid)
