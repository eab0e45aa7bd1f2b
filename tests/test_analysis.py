"""The analysis library: token top-k, fixed patterns, step switches, the forward memo and its trace, the
early-step ablation (its SparseD rule is SparseD), head statistics, step similarity, result tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sparsed.analysis import head_stats as hs
from sparsed.analysis import similarity as sim
from sparsed.analysis import tables as tb
from sparsed.analysis.early_steps import ablate_prompt, commit_kl, curves
from sparsed.analysis.fixed_pattern import FixedBlockPattern
from sparsed.analysis.memo import MemoModel
from sparsed.analysis.pattern_probe import PatternProbe
from sparsed.analysis.switching import StepSwitch
from sparsed.analysis.token_topk import TokenTopK
from sparsed.attention import GenerationInfo, build_method
from sparsed.attention.methods.sparsed import SparseDSettings
from sparsed.config import GenConfig
from sparsed.sampling.llada import generate
from tests.test_samplers import tiny


def test_token_topk_keeps_the_top_share_of_keys_per_query():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 20, 8, generator=g, dtype=torch.float64) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # GQA
    m = TokenTopK(0.3)
    out = m.attend(0, q, k, v, None)
    kk, vv = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    s = q @ kk.transpose(-1, -2) / math.sqrt(8)
    keep = s >= s.topk(6, -1).values[..., -1:]  # ceil(0.3 * 20) = 6 keys
    want = torch.softmax(s.masked_fill(~keep, -torch.inf), -1) @ vv
    torch.testing.assert_close(out, want)
    assert m.report()["density_mean"] == pytest.approx(6 / 20)
    torch.testing.assert_close(TokenTopK(1.0).attend(0, q, k, v, None), torch.softmax(s, -1) @ vv)
    valid = torch.ones(1, 20, dtype=torch.bool)
    valid[0, :10] = False  # only 10 real keys: 3 kept, none of them padding
    out = TokenTopK(0.3).attend(0, q, k, v, valid)
    s2 = s.masked_fill(~valid[:, None, None], -torch.inf)
    keep = s2 >= s2.topk(3, -1).values[..., -1:]
    torch.testing.assert_close(out, torch.softmax(s2.masked_fill(~keep, -torch.inf), -1) @ vv)


def test_step_switch_runs_each_side_at_its_steps_and_names_their_tags():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 4, 16, 8, generator=g) for _ in range(3))
    dense, topk = build_method("dense"), TokenTopK(0.25)
    sw = StepSwitch(dense, topk, 2, tags=("d", "t"))
    sw.start(GenerationInfo(1, 16, 12, 4, 4))
    outs = []
    for step in range(4):
        sw.set_step(step)
        outs.append((sw.forward(0, q, k, v), sw.signature()))
    assert [t for _, t in outs] == ["d", "d", "t", "t"]
    torch.testing.assert_close(outs[0][0], dense.attend(0, q, k, v, None))
    torch.testing.assert_close(outs[3][0], topk.attend(0, q, k, v, None))


def test_memo_reuses_forwards_and_traces_what_each_position_was_committed_from():
    model = tiny("llada")
    prompt = torch.randint(0, 290, (1, 24), generator=torch.Generator().manual_seed(3))
    kw = dict(steps=8, gen_length=8, block_length=8)
    plain = generate(model, prompt, attention=build_method("dense"), **kw)
    memo = MemoModel(model)
    method = StepSwitch(build_method("dense"), build_method("dense"), 0, tags=("dense", "dense"))
    memo.begin(24)
    first = generate(memo, prompt, attention=method, **kw)
    trace = memo.end(first.sequences)
    assert torch.equal(plain.sequences, first.sequences) and memo.forwards == 8 and memo.hits == 0
    assert bool(trace.committed.all())
    # greedy decoding commits the argmax of the distribution it committed from
    assert torch.equal(trace.commit_logp.argmax(-1), first.generated)
    memo.begin(24)
    again = generate(memo, prompt, attention=method, **kw)
    trace2 = memo.end(again.sequences)
    assert torch.equal(again.sequences, plain.sequences) and memo.forwards == 8 and memo.hits == 8
    assert commit_kl(trace, trace2) == 0.0
    memo.begin(24)  # a method without a tag is never reused
    generate(memo, prompt, attention=build_method("dense"), **kw)
    assert memo.forwards == 16


def test_fixed_pattern_of_sparsed_s_own_grid_is_sparsed():
    model = tiny("llada")
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 4, 40, 16, generator=g) for _ in range(3))
    sd = build_method("sparsed", {"block_size": 8, "select": 0.3, "skip": 0.0, "compat": "paper"}, model.args.facts)
    info = GenerationInfo(1, 40, 32, 8, 8)
    sd.start(info)
    sd.set_step(0)  # paper, skip 0: built from step 0's own q/k and used at once
    want = sd.attend(0, q, k, v, None)
    fixed = FixedBlockPattern({0: sd.patterns[0]}, 8)
    torch.testing.assert_close(fixed.attend(0, q, k, v, None), want)
    probe = PatternProbe(build_method("dense"), build_method("sparsed", {"block_size": 8, "select": 0.3, "skip": 0.0,
                                                                         "compat": "paper"}, model.args.facts))
    probe.start(info)
    probe.set_step(0)
    probe.forward(0, q, k, v)
    assert torch.equal(probe.grid(0)[0], sd.patterns[0])


@pytest.fixture(scope="module")
def ablation():
    model = tiny("llada")
    prompt = torch.randint(0, 290, (1, 40), generator=torch.Generator().manual_seed(5))
    settings = SparseDSettings(block_size=8, select=0.3, skip=0.2)
    gen = GenConfig(steps=8, gen_length=8, block_length=8)
    return model, prompt, settings, ablate_prompt(model, prompt, gen, list(range(9)), settings,
                                                  scorer=lambda toks: float(toks[0] % 2) * 100)


def test_early_step_ablation_endpoints_are_dense_and_all_sparse(ablation):
    model, prompt, settings, a = ablation
    dense = generate(model, prompt, steps=8, gen_length=8, block_length=8, attention=build_method("dense"))
    assert a.dense_tokens == dense.generated[0].tolist()
    for rule in ("token_topk", "sparsed"):
        fs = {r.x: r for r in a.runs if r.rule == rule and r.direction == "full_to_sparse"}
        sf = {r.x: r for r in a.runs if r.rule == rule and r.direction == "sparse_to_full"}
        assert fs[8].tokens == sf[0].tokens == a.dense_tokens and fs[8].kl == sf[0].kl == 0.0
        assert fs[0].tokens == sf[8].tokens and fs[0].kl == pytest.approx(sf[8].kl, abs=1e-6)
        assert fs[0].kl > 0
    topk = generate(model, prompt, steps=8, gen_length=8, block_length=8, attention=TokenTopK(0.3))
    assert {r.x: r for r in a.runs if r.rule == "token_topk" and r.direction == "full_to_sparse"}[0].tokens == \
        topk.generated[0].tolist()
    assert a.forwards < a.calls  # shared prefixes were computed once
    c = curves([a, a])
    assert c.kl["sparsed/full_to_sparse"] == a.curve("sparsed", "full_to_sparse", "kl")
    share = c.early_share("sparsed")
    assert share["x"] == 2 and all(math.isfinite(v) for v in share.values())
    assert len(c.sensitivity["token_topk"]) == 8 and all(v >= -1e-6 for v in c.sensitivity["sparsed"])


@pytest.mark.parametrize("skip", [0.0, 0.25, 0.5])
def test_full_to_sparse_with_the_sparsed_rule_is_sparsed_with_that_skip(ablation, skip):
    """Released schedule: dense steps 0..int(T*skip)+1, pattern of step int(T*skip)+1, sparse from +2."""
    model, prompt, settings, a = ablation
    method = build_method("sparsed", {"block_size": 8, "select": 0.3, "skip": skip}, model.args.facts)
    out = generate(model, prompt, steps=8, gen_length=8, block_length=8, attention=method)
    x = int(8 * skip) + 2
    run = next(r for r in a.runs if r.rule == "sparsed" and r.direction == "full_to_sparse" and r.x == x)
    assert run.tokens == out.generated[0].tolist()


def test_head_statistics_tell_window_column_and_mixed_heads_apart():
    n = 8
    window = np.eye(n) * 0.8 + np.eye(n, k=1) * 0.1 + np.eye(n, k=-1) * 0.1
    window /= window.sum(-1, keepdims=True)
    column = np.full((n, n), 0.02)
    column[:, 0] = 1.0
    column /= column.sum(-1, keepdims=True)
    mixed = np.vstack([window[:4], column[4:]])  # window-like prompt rows, column-like generation rows
    uniform = np.full((n, n), 1 / n)
    maps = {0: np.stack([window, column, mixed, uniform])[None].repeat(3, 0)}  # [steps, H, nq, nk]
    st = hs.head_stats(maps, prompt_blocks=4)
    assert st.locality[0, 0] == pytest.approx(1.0) and st.verticality[0, 1] == pytest.approx(1 / 1.14)
    assert st.verticality[0, 3] == pytest.approx(1 / n) and st.mixedness[0, 2] > 0.5
    assert st.choose() == {"column": (0, 1), "window": (0, 0), "mixed": (0, 2)}
    assert hs.js_divergence(window, window) == pytest.approx(0.0, abs=1e-12)
    assert 0 < hs.js_divergence(window, column) <= math.log(2)
    assert hs.within_heads(maps[0]) == pytest.approx(0.0, abs=1e-12) and hs.between_heads(maps[0]) > 0.1
    nan_rows = window.copy()
    nan_rows[:2] = np.nan  # query blocks a call did not compute are ignored
    assert hs.locality(nan_rows[None])[0] == pytest.approx(1.0)


def test_similarity_of_maps_and_selections():
    rng = np.random.default_rng(0)
    m = rng.random((4, 5, 5))
    m[2] = m[0] * 3  # the same map up to scale
    c = sim.step_cosine(m)
    assert c[0, 2] == pytest.approx(1.0) and np.allclose(np.diag(c), 1) and (c <= 1 + 1e-12).all()
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[:, :, 0] = True
    b = a.clone()
    b[1, :, 1] = True
    assert sim.jaccard(a, b).tolist() == [1.0, 0.5]
    grids = {(t, 0): (a if t < 2 else b)[None] for t in range(4)}
    jv = sim.jaccard_vs_build(grids, 1, 4, 1)
    assert jv.shape == (2, 1, 2) and jv[:, 0, 1].tolist() == [0.5, 0.5]
    jm = sim.jaccard_matrix(grids, 0, 1, 4)
    assert jm[0, 1] == 1.0 and jm[0, 3] == 0.5


def test_ablation_latency_composition_matches_the_benchmark_s_own():
    lat = tb.latency_table("results/latency/h200_llada8b.json")
    comp = tb.ablation_latency(lat.steps[65536])
    assert comp["sparsed"] == pytest.approx(lat.by_length[65536]["sparsed"], abs=0.01)
    assert comp["dense"] == pytest.approx(lat.by_length[65536]["dense_cudnn"], abs=0.01)
    assert comp["no_skip"] < comp["sparsed"] < comp["dense"] < comp["no_reuse"]


def test_latency_runs_merge_by_length_and_keep_figure_5_from_the_64k_run():
    lat = tb.latency_table("results/latency/h200_dream7b.json", "results/latency/h200_dream7b_4k32k.json")
    assert sorted(lat.by_length) == [4096, 8192, 16384, 32768, 65536]
    assert "sparsed_fa4" in lat.by_length[4096] and "sparsed_fa4" not in lat.by_length[65536]
    assert sorted(lat.by_steps) == [64, 128, 256, 512, 1024]  # the 32k run's own sweep is not Figure 5
    assert lat.by_steps[128]["fastest_dense"] == pytest.approx(lat.by_length[65536]["fastest_dense"])
    with pytest.raises(ValueError, match="shape"):
        tb.latency_table("results/latency/h200_dream7b.json", "results/latency/h200_llada8b.json")


def test_accuracy_tables_read_the_result_files():
    card = tb.accuracy_table("results/small_dlm/ruler_stage3_n50.json")
    assert card.average("2048", "dense", card.common_tasks("2048")) == pytest.approx(96.06, abs=0.01)
    caches = tb.accuracy_table("results/cache_small/accuracy_h200.json")
    tasks = caches.common_tasks("2048")
    assert 0 < len(tasks) < 11 and caches.device == "NVIDIA H200"
    assert tb.kernel_speedups()["by_length"][65536]["fa4_sparse"] == pytest.approx(2.94, abs=0.01)
