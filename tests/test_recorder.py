"""The attention recorder: outputs unchanged for every method, cache and family; pooled maps equal to a float64
reference; bounded memory at length; the run switch (off = not wrapped) and the file beside result.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sparsed.analysis.pooling import pooled_attention, select_heads
from sparsed.analysis.record_file import AttentionRecord
from sparsed.analysis.record_settings import RecordSettings
from sparsed.analysis.recorder import AttentionRecorder
from sparsed.attention import GenerationInfo, Layout, build_method
from sparsed.cache import build_cache
from sparsed.config_errors import ConfigError
from sparsed.sampling.llada import generate
from tests.test_cached_methods import _tiny_sdar
from tests.test_samplers import run, tiny


def reference_pooled(q, k, bs, mask=None, q_pos=None, rows=None):
    """float64 dense softmax, then the mean over each query block's rows of the mass on each key block."""
    n_rep = q.shape[1] // k.shape[1]
    kk = k.double().repeat_interleave(n_rep, dim=1)
    s = torch.matmul(q.double(), kk.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~(mask[:, None, None, :] if mask.dim() == 2 else mask), float("-inf"))
    p = torch.softmax(s, -1).nan_to_num(0.0)
    B, H, Lq, Lk = p.shape
    rows = rows or Lq
    q_pos = torch.arange(Lq)[None].expand(B, -1) if q_pos is None else q_pos
    nq, nk = math.ceil(rows / bs), math.ceil(Lk / bs)
    out = torch.full((B, H, nq, nk), float("nan"), dtype=torch.float64)
    for b in range(B):
        for i in range(nq):
            sel = (q_pos[b] // bs == i) & torch.isfinite(s[b, 0]).any(-1)
            if sel.any():
                blk = p[b, :, sel]  # [H, r, Lk]
                out[b, :, i] = torch.stack([blk[..., j * bs:(j + 1) * bs].sum(-1).mean(-1) for j in range(nk)], -1)
    return out


def qk(B=2, H=4, Hkv=2, L=70, D=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, L, D, generator=g), torch.randn(B, Hkv, L, D, generator=g)


def test_pooled_attention_equals_a_float64_reference_plain_masked_and_cached():
    q, k = qk()
    want = reference_pooled(q, k, 16)
    got = pooled_attention(q, k, 16)  # through SparseD's estimator (block_mass)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-5, rtol=0)  # rows sum to 1
    # the masked loop, with an all-True mask, gives the same maps as the estimator
    torch.testing.assert_close(pooled_attention(q, k, 16, mask=torch.ones(2, 70, dtype=torch.bool)), got, atol=1e-6, rtol=0)
    valid = torch.ones(2, 70, dtype=torch.bool)
    valid[1, :9] = False  # left padding of row 1
    torch.testing.assert_close(pooled_attention(q, k, 16, mask=valid).double(), reference_pooled(q, k, 16, valid),
                               atol=1e-5, rtol=0)
    # a cached call: the queries are canvas rows 40..69 of a 70-row canvas, keys all rows
    pos = torch.arange(40, 70)[None].expand(2, -1)
    got = pooled_attention(q[:, :, 40:], k, 16, q_pos=pos, n_query_rows=70)
    want = reference_pooled(q[:, :, 40:], k, 16, q_pos=pos, rows=70)
    assert torch.isnan(got[:, :, :2]).all() and torch.isfinite(got[:, :, 3:]).all()  # blocks 0, 1 hold no query
    torch.testing.assert_close(got.double()[:, :, 2:], want[:, :, 2:], atol=1e-5, rtol=0)


def test_pooled_attention_of_selected_heads_pairs_each_with_its_kv_head():
    q, k = qk(H=6, Hkv=2)
    qs, ks = select_heads(q, k, [1, 4, 5])
    full = reference_pooled(q, k, 16)
    torch.testing.assert_close(pooled_attention(qs, ks, 16).double(), full[:, [1, 4, 5]], atol=1e-5, rtol=0)


def _recorded(model, method, settings=None, **kw):
    rec = AttentionRecorder(method, settings or RecordSettings(attention=True, block_size=8, full_maps=[[1, 2]]))
    return run(model, kw.pop("prompt"), method=rec, **kw), rec


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("name", ["dense", "sparsed", "sliding_window", "streaming_llm"])
def test_recording_leaves_every_method_unchanged(arch, name):
    model = tiny(arch)
    prompt = torch.randint(0, 290, (1, 40), generator=torch.Generator().manual_seed(1))
    settings = {"sparsed": {"block_size": 8}, "sliding_window": {"ws": 16}, "streaming_llm": {"ws": 16}}.get(name, {})
    plain = run(model, prompt, method=build_method(name, settings, model.args.facts))
    out, rec = _recorded(model, build_method(name, settings, model.args.facts), prompt=prompt)
    assert torch.equal(plain.sequences, out.sequences)
    assert rec.report()["method"] == name and rec.report() == rec.inner.report()
    assert len(rec.pooled) == 8 * 2 and rec.pooled[(3, 1)].shape == (1, 4, 7, 7)  # 56 rows in blocks of 8
    assert set(rec.full) == {(s, 1, 2) for s in range(8)} and rec.full[(0, 1, 2)].shape == (1, 56, 56)


def test_recording_a_padded_batch_and_a_kv_cache_changes_nothing():
    model = tiny("llada")
    g = torch.Generator().manual_seed(2)
    prompt = torch.randint(0, 290, (2, 30), generator=g)
    mask = torch.ones(2, 30, dtype=torch.long)
    mask[1, :7] = 0
    for method, cache in ((build_method("sparsed", {"block_size": 8}, model.args.facts), None),
                          (build_method("dense"), build_cache("prefix")),
                          (build_method("quest", {"budget": 16}, model.args.facts), build_cache("prefix"))):
        kw = dict(steps=8, gen_length=16, block_length=8, attention_mask=mask, cache=cache)
        plain = generate(model, prompt, attention=method, **kw)
        rec = AttentionRecorder(method, RecordSettings(attention=True, block_size=8))
        out = generate(model, prompt, attention=rec, **kw)
        assert torch.equal(plain.sequences, out.sequences)
        finite = [torch.isfinite(t).all(-1) for t in rec.pooled.values()]
        assert all(bool(f.any()) for f in finite)
        if cache is not None:  # a cached call records the rows it computed, at their canvas rows
            assert any(not bool(f.all()) for f in finite) and rec.q_rows


def test_recording_block_diffusion():
    from sparsed.sampling.sdar import generate as sdar_generate

    model = _tiny_sdar()
    p = torch.randint(0, 290, (1, 30), generator=torch.Generator().manual_seed(6))
    kw = dict(steps=8, gen_length=8, block_length=4, cache=build_cache("block_prefix"))
    plain = sdar_generate(model, p, attention=build_method("dense"), **kw)
    rec = AttentionRecorder(build_method("dense"), RecordSettings(attention=True, block_size=4))
    out = sdar_generate(model, p, attention=rec, **kw)
    assert torch.equal(plain.sequences, out.sequences) and rec.pooled
    for t in rec.pooled.values():  # block-causal: no query block puts mass on a later key block
        m = torch.nan_to_num(t[0].float())
        assert float(torch.triu(m, diagonal=1).abs().max()) == 0.0


class LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("padded", [False, True])
def test_memory_is_bounded_at_length_no_full_map(padded):
    """At 4096 tokens with 256-token tiles: the record is [B, H, 16, 16], full maps are skipped, and no tensor
    the recorder makes is larger than one query block's scores (never L x L)."""
    B, H, L, D, bs = 1, 4, 4096, 16, 256
    q, k = qk(B=B, H=H, Hkv=H, L=L, D=D)
    s = RecordSettings(attention=True, block_size=bs, full_maps=[[0, 1]], full_max_tokens=1024)
    rec = AttentionRecorder(build_method("dense"), s)
    rec.start(GenerationInfo(batch_size=B, canvas_length=L, prompt_length=L - 32, gen_length=32, total_steps=4))
    rec.set_step(0)
    valid = None
    if padded:
        valid = torch.ones(B, L, dtype=torch.bool)
        valid[:, :100] = False
    with LargestTensor() as watch:
        rec.observe(0, q, k, valid, None)
    assert rec.pooled[(0, 0)].shape == (B, H, 16, 16) and not rec.full
    assert watch.largest <= B * H * bs * L < H * L * L
    assert rec.metadata()["full_maps_skipped"].startswith("canvas of 4096 tokens")


def test_a_record_that_would_be_too_large_is_refused_before_the_first_step():
    rec = AttentionRecorder(build_method("dense", facts=None), RecordSettings(attention=True, block_size=16, max_gib=0.01))
    rec.facts = tiny("llada").args.facts
    with pytest.raises(ConfigError, match="record.max_gib"):
        rec.start(GenerationInfo(batch_size=1, canvas_length=8192, prompt_length=8000, gen_length=192, total_steps=64))


@pytest.mark.parametrize(("kw", "match"), [({"block_size": 0}, "record.block_size"), ({"heads": []}, "record.heads"),
                                           ({"full_maps": [[1]]}, "record.full_maps"), ({"dtype": "bf16"}, "record.dtype"),
                                           ({"file": "a/b"}, "record.file"), ({"steps": []}, "record.steps")])
def test_bad_record_settings_are_one_clear_error(kw, match):
    with pytest.raises(ConfigError, match=match):
        RecordSettings(**kw).validate()


def test_steps_count_from_the_end_and_layers_outside_the_model_are_refused():
    s = RecordSettings(steps=[1, -1, 99], full_steps=[-1])
    assert s.resolved_steps(32) == [1, 31] and s.resolved_full_steps(32) == [31]
    rec = AttentionRecorder(build_method("dense"), RecordSettings(attention=True, layers=[5]))
    rec.facts = tiny("llada").args.facts
    with pytest.raises(ConfigError, match="record.layers"):
        rec.start(GenerationInfo(batch_size=1, canvas_length=64, prompt_length=48, gen_length=16, total_steps=8))


def _runner_cfg(tmp_path, *extra):
    from sparsed.analysis.workbench import compose_run

    return compose_run(["model=llada_small_random", "prompt=short", "gen.steps=4", "gen.gen_length=8",
                        "gen.block_length=8", "run.warmup=true", "run.progress=false", "attention=sparsed",
                        "sparsed.block_size=16", *extra])


def test_the_run_switch_off_does_not_wrap_and_on_writes_the_record_beside_result_json(tmp_path, monkeypatch):
    import sparsed.runner as runner

    seen = []
    real = runner.sample
    monkeypatch.setattr(runner, "sample", lambda model, ids, gen, method, **kw: seen.append(method) or real(model, ids, gen,
                                                                                                           method, **kw))
    off = runner.run(_runner_cfg(tmp_path), tmp_path / "off")
    assert seen and not any(isinstance(m, AttentionRecorder) for m in seen)
    assert "attention_record" not in off and not list((tmp_path / "off").glob("*.safetensors"))
    seen.clear()
    on = runner.run(_runner_cfg(tmp_path, "record.attention=true", "record.steps=[0,-1]", "record.heads=[0,2]",
                                "record.full_maps=[[1,2]]"), tmp_path / "on")
    assert all(isinstance(m, AttentionRecorder) for m in seen)
    assert on["answer_token_ids"] == off["answer_token_ids"] and on["attention"] == off["attention"]
    path = tmp_path / "on" / "attention_record.safetensors"
    assert on["attention_record"]["path"] == str(path) and path.is_file()
    assert json.loads((tmp_path / "on" / "result.json").read_text())["attention_record"]["steps"] == [0, 3]
    rec = AttentionRecord.load(path)  # the timed run's record (the warm-up's was replaced)
    assert rec.steps == [0, 3] and rec.heads == [0, 2] and rec.meta["total_steps"] == 4
    p = rec.pooled(3, 1)
    assert p.shape[:2] == (1, 2) and np.allclose(np.nansum(p, -1), 1, atol=2e-3)
    assert rec.full(0, 1, 2).shape[-1] == rec.meta["canvas_length"]


def test_recording_an_evaluation_task_is_refused():
    from sparsed.config import validate

    with pytest.raises(ConfigError, match="record.attention=true records generation runs"):
        validate(_runner_cfg(None, "record.attention=true", "task=ruler"))


def test_layout_key_mask_is_applied_in_a_cached_call():
    """Padding keys and the block-causal rule get no mass in a cached call."""
    q, k = qk(B=1, H=2, Hkv=2, L=24)
    lay = Layout(torch.arange(12, 24)[None], 24, (12, 24), block=4)
    valid = torch.ones(1, 24, dtype=torch.bool)
    valid[0, :3] = False
    got = pooled_attention(q[:, :, 12:], k, 4, mask=lay.key_mask(valid), q_pos=lay.q_pos, n_query_rows=24)
    m = torch.nan_to_num(got)[0]  # [H, 6 query blocks, 6 key blocks]; blocks 0-2 hold no query of this call
    assert float(m.triu(1).abs().max()) == 0.0 and torch.isnan(got[0, :, :3]).all()
    torch.testing.assert_close(got[0, :, 3:].double(), reference_pooled(q[:, :, 12:], k, 4, lay.key_mask(valid), lay.q_pos,
                                                                        24)[0, :, 3:], atol=1e-5, rtol=0)


def test_recorder_and_latency_timer_nest_in_either_order():
    """Both wrappers are DelegatingMethods: either order leaves the tokens unchanged, times the attention per step
    and switches on the real method's phase timing (SparseD's pattern build), and the record is kept."""
    from sparsed.attention.timing import TimedAttention

    model = tiny("llada")
    prompt = torch.randint(0, 290, (1, 40), generator=torch.Generator().manual_seed(1))

    def sparsed():
        return build_method("sparsed", {"block_size": 8}, model.args.facts)

    plain = run(model, prompt, method=sparsed())
    settings = RecordSettings(attention=True, block_size=8)
    for order in ("timer inside", "timer outside"):
        inner = sparsed()
        if order == "timer inside":
            rec = AttentionRecorder(TimedAttention(inner), settings)
            outer = rec
        else:
            rec = AttentionRecorder(inner, settings)
            outer = TimedAttention(rec)
        out = run(model, prompt, method=outer)
        assert torch.equal(plain.sequences, out.sequences), order
        assert inner.profile and outer.profile, order
        report = outer.report()
        assert report["method"] == "sparsed" and len(report["attention_s_per_step"]) == 8, order
        assert report["timings_s"]["pattern_build_s"] > 0, order
        assert len(rec.pooled) == 8 * 2, order


def test_a_latency_run_with_recording_profiles_and_records(tmp_path):
    import sparsed.runner as runner

    base = ("task=latency", "task.repeats=1")
    timed = runner.run(_runner_cfg(tmp_path, *base), tmp_path / "timed")
    both = runner.run(_runner_cfg(tmp_path, *base, "record.attention=true", "record.steps=[-1]"), tmp_path / "both")
    assert both["answer_token_ids"] == timed["answer_token_ids"]
    for r in (timed, both):
        lat = r["latency"]
        assert len(lat["attention_s_per_step"]) == 4 and lat["pattern_build_s"] > 0
        assert r["attention"]["density_mean"] == timed["attention"]["density_mean"]
    assert "attention_record" not in timed
    assert AttentionRecord.load(both["attention_record"]["path"]).steps == [3]
    assert any("record.attention=true with task=latency" in w for w in both["warnings"])


def test_a_result_set_aside_takes_its_attention_record_along(tmp_path):
    """A relaunch with other settings sets the old result aside; its record goes with it (same suffix), so the
    new run's record never replaces it."""
    from sparsed.launch.job import set_aside

    (tmp_path / "result.stale-1.json").write_text("{}")  # an earlier set-aside: the next free number is 2
    record = tmp_path / "attention_record.safetensors"
    record.write_bytes(b"old record")
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"config": {}, "attention_record": {"path": "/elsewhere/attention_record.safetensors"}}))
    assert set_aside(path, "stale") == tmp_path / "result.stale-2.json"
    assert not path.exists() and not record.exists()
    assert (tmp_path / "attention_record.stale-2.safetensors").read_bytes() == b"old record"
    path.write_text("not json")  # a corrupt result names nothing: only it moves
    record.write_bytes(b"new")
    assert set_aside(path, "corrupt") == tmp_path / "result.corrupt-1.json" and record.read_bytes() == b"new"
