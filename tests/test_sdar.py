"""SDAR / TraDo: the architecture against transformers' Qwen3, the block-causal mask, the exact prefix cache,
and the block sampler against the goldens of the original SDAR code (../shared/goldens/sdar-tiny, see its
README and NOTES): logits under four masks, and token-for-token generations with every model call's inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from sparsed.attention import build_method
from sparsed.cache import build_cache
from sparsed.config_errors import ConfigError
from sparsed.models.kv_cache import KVCache
from sparsed.models.loading import load_model, random_model, save_checkpoint
from sparsed.models.sdar import args_from_config, checkpoint_name, map_name
from sparsed.models.transformer import DiffusionLM, ModelArgs
from sparsed.sampling import block_rules
from sparsed.sampling.sdar import check_sdar_settings, generate

GOLDENS = Path(os.environ.get("SPARSED_GOLDENS", Path(__file__).resolve().parents[1].parent / "shared" / "goldens"))
TINY = GOLDENS / "sdar-tiny"


def _meta() -> dict:
    path = TINY / "expected_meta.json"
    return json.loads(path.read_text())["generate"] if path.is_file() else {}


GEN_CASES = sorted(_meta())


@pytest.fixture(scope="module")
def golden():
    if not (TINY / "expected.safetensors").is_file():
        pytest.skip(f"SDAR goldens not found at {TINY} (set SPARSED_GOLDENS)")
    from safetensors.torch import load_file

    return load_model(str(TINY), device="cpu", dtype="fp32"), load_file(str(TINY / "expected.safetensors")), _meta()


def sharp_sdar(vocab: int = 300, seed: int = 3) -> DiffusionLM:
    """A random SDAR-architecture model with decisive logits (no near-ties between batch and single rows)."""
    args = ModelArgs(arch="sdar", vocab_size=vocab, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                     norm_eps=1e-6, rope_theta=1e6, qkv_bias=False, mask_token_id=vocab - 1, eos_token_id=vocab - 2,
                     rope_in_fp32=False, head_dim_override=24, qk_norm=True, block_causal=True, norm_weight_fp32=True)
    model = random_model(args, device="cpu", dtype="fp32", seed=seed)
    with torch.no_grad():
        model.head.weight.mul_(20)
        for layer in model.layers:
            layer.wq.weight.mul_(5)
            layer.wk.weight.mul_(5)
    return model


def _prompt(n: int, seed: int, vocab: int = 290) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(seed))


# -- the architecture ------------------------------------------------------------------------------


def test_block_length_one_is_qwen3_causal_lm():
    """With blocks of one token the block-causal mask is the causal mask: transformers' Qwen3ForCausalLM logits."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=24, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
                      max_position_embeddings=256, attention_bias=False)
    torch.manual_seed(0)
    ref = Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # away from the init's unit norms, so that every weight matters
        for name, p in ref.named_parameters():
            p.uniform_(0.5, 1.5) if "norm" in name else p.normal_(0.0, 0.3)
    ours = DiffusionLM(args_from_config(cfg.to_dict() | {"mask_token_id": 299})).eval()
    state = {map_name(k): v for k, v in ref.state_dict().items()}
    assert None not in state
    ours.load_state_dict(state, strict=True)
    ids = torch.randint(0, 300, (2, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(ids).logits
        got = ours.head(ours.hidden_states(ids, block=1))
        bidirectional = ours(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(bidirectional, expected, atol=1e-2)  # the mask is what makes it causal


def test_block_causal_mask_equals_the_explicit_mask():
    model = sharp_sdar()
    x = _prompt(22, 1)
    L, b = 22, 4
    blocks = torch.arange(L) // b
    explicit = (blocks[None, :] <= blocks[:, None])[None, None]
    with torch.no_grad():
        got = model.hidden_states(x, block=b)
        ref = model.hidden_states(x, attention_mask=explicit, positions=torch.arange(L)[None])
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
        y = x.clone()
        y[0, 13] = (y[0, 13] + 1) % 290  # a token of block 3 (rows 12-15)
        changed = (model.hidden_states(y, block=b) - got).abs().amax(-1)[0]
    assert changed[:12].max() == 0  # earlier blocks never see it
    assert (changed[12:16] > 0).all()  # its own block sees it (bidirectional inside a block)


def test_the_prefix_cache_is_exact():
    """A block computed against the cached K/V of the finished blocks equals the uncached block-causal forward."""
    model = sharp_sdar()
    x = _prompt(24, 2)
    with torch.no_grad():
        full = model.hidden_states(x, block=4)
        kv = KVCache(24)
        prefix = model.hidden_states(x, cache=kv, key_len=16, block=4)
        block = model.hidden_states(x, rows=(16, 20), cache=kv, key_len=20, block=4)
    torch.testing.assert_close(prefix, full[:, :16], atol=2e-5, rtol=0)
    torch.testing.assert_close(block, full[:, 16:20], atol=2e-5, rtol=0)


def test_bf16_numerics_follow_the_released_code():
    """flash-attn's fused RMSNorm (what modeling_sdar calls) applies the weight in float32 and rounds once; RoPE's
    cos/sin are rounded to the model dtype before they rotate (SDARRotaryEmbedding returns them in x.dtype)."""
    from sparsed.models.transformer import RMSNorm, apply_rope, rope_tables

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 96, generator=g).bfloat16()
    w = (1 + torch.randn(96, generator=g) * 0.3).bfloat16()
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
    fused = RMSNorm(96, 1e-6, weight_fp32=True).bfloat16()
    hf = RMSNorm(96, 1e-6).bfloat16()
    with torch.no_grad():
        fused.weight.copy_(w)
        hf.weight.copy_(w)
        assert torch.equal(fused(x), (normed * w.float()).bfloat16())
        assert torch.equal(hf(x), w * normed.bfloat16())
        assert not torch.equal(fused(x), hf(x))  # one rounding fewer: the two differ in bf16
    cos, sin = rope_tables(torch.arange(40)[None] + 3000, 96, 1e6)
    q = torch.randn(1, 2, 40, 96, generator=g).bfloat16()
    half = torch.cat([-q[..., 48:], q[..., :48]], dim=-1)
    assert torch.equal(apply_rope(q, cos, sin, in_fp32=False), q * cos.bfloat16() + half * sin.bfloat16())
    a = args_from_config({"model_type": "sdar", "hidden_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 64, "vocab_size": 10, "mask_token_id": 9})
    assert a.norm_weight_fp32 and not a.rope_in_fp32


def test_config_mapping_and_one_line_errors():
    cfg = json.loads((TINY / "config.json").read_text()) if (TINY / "config.json").is_file() else {
        "model_type": "sdar", "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 256, "vocab_size": 512, "mask_token_id": 511}
    a = args_from_config(cfg)
    assert (a.arch, a.head_dim, a.n_kv_heads, a.qk_norm, a.block_causal, a.shift_logits, a.qkv_bias) == (
        "sdar", 32, 2, True, True, False, False)
    assert a.facts.block_causal
    for key, value, msg in [("tie_word_embeddings", True, "tie_word_embeddings"), ("attention_bias", True, "bias"),
                            ("hidden_act", "gelu", "hidden_act"), ("rope_scaling", {"type": "yarn"}, "rope_scaling")]:
        with pytest.raises(ConfigError, match=msg):
            args_from_config(cfg | {key: value})
    with pytest.raises(ConfigError, match="no mask_token_id"):
        args_from_config({k: v for k, v in cfg.items() if k != "mask_token_id"})


def test_the_sdar_layout_round_trips(tmp_path):
    model = sharp_sdar()
    save_checkpoint(model, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "model.layers.1.self_attn.q_norm.weight" in names and "lm_head.weight" in names
    assert all(map_name(checkpoint_name(k)) == k for k in model.state_dict())
    back = load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert back.args == model.args
    x = _prompt(12, 3)
    with torch.no_grad():
        assert torch.equal(back.hidden_states(x, block=4), model.hidden_states(x, block=4))


# -- the golden checkpoint ------------------------------------------------------------------------


def test_the_real_layout_loads_every_tensor_exactly(golden):
    from safetensors import safe_open

    model, _, _ = golden
    with safe_open(str(TINY / "model.safetensors"), "pt") as f:
        ckpt = {k: f.get_tensor(k) for k in f.keys()}
    state = model.state_dict()
    assert {map_name(k) for k in ckpt} == set(state)
    for k, v in ckpt.items():
        assert torch.equal(state[map_name(k)], v), k


@pytest.mark.parametrize(("name", "block"), [("logits_bidirectional", None), ("logits_causal", 1),
                                             ("logits_blockcausal_b4", 4), ("logits_blockcausal_b8", 8)])
def test_logits_match_the_original(golden, name, block):
    model, expected, _ = golden
    with torch.no_grad():
        logits = model.head(model.hidden_states(expected["prompt"], block=block))
    torch.testing.assert_close(logits, expected[name], atol=1e-5, rtol=0)


class CallLog:
    """Records the block tokens of every forward and whether the cache keeps its K/V (test only)."""

    def __init__(self, model: DiffusionLM) -> None:
        self.inputs: list[torch.Tensor] = []
        self.rows: list[tuple[int, int]] = []
        self.stored: list[bool] = []
        inner = model.hidden_states
        self.method = build_method("dense")
        set_step = self.method.set_step

        def hidden_states(input_ids, *args, rows=None, key_len=None, **kw):  # noqa: ANN001, ANN202
            lo, hi = rows if isinstance(rows, tuple) else (0, key_len or input_ids.shape[1])
            self.rows.append((lo, hi))
            self.inputs.append(input_ids[:, lo:hi].clone())
            return inner(input_ids, *args, rows=rows, key_len=key_len, **kw)

        def recorded_step(step, where=None):  # noqa: ANN001, ANN202
            self.stored.append(bool(where is not None and where.refresh))
            set_step(step, where)

        model.hidden_states = hidden_states
        self.method.set_step = recorded_step
        self.model, self.inner = model, inner

    def close(self) -> None:
        del self.model.hidden_states  # back to the class's method


def _run_golden(model, expected, setting: dict, cache=None, attention=None):
    kw = setting["kwargs"]
    b, per_block = kw["block_length"], kw["denoising_steps"]
    dynamic = kw["remasking_strategy"] == "low_confidence_dynamic"
    gen = torch.Generator().manual_seed(1234)  # the stochastic golden's torch.manual_seed(1234); unused when greedy
    return generate(model, expected["prompt"], steps=per_block * kw["gen_length"] // b, gen_length=kw["gen_length"],
                    block_length=b, temperature=kw["temperature"], top_k=kw["top_k"], top_p=kw["top_p"],
                    remasking=kw["remasking_strategy"], threshold=kw["confidence_threshold"] if dynamic else None,
                    generator=gen, cache=cache, attention=attention)


@pytest.mark.parametrize("name", GEN_CASES)
def test_generation_matches_the_original_call_for_call(golden, name):
    model, expected, meta = golden
    setting = meta[name]
    log = CallLog(model)
    try:
        out = _run_golden(model, expected, setting, attention=log.method)
    finally:
        log.close()
    assert torch.equal(out.sequences, expected[name])
    assert out.nfe == setting["nfe_total_model_calls"] == len(log.inputs)
    if f"{name}__call_inputs" in expected:  # the greedy goldens record every call after the prefill
        assert log.rows[0] == (0, (expected["prompt"].shape[1] // setting["kwargs"]["block_length"])
                               * setting["kwargs"]["block_length"]) and log.stored[0]
        assert torch.equal(torch.cat(log.inputs[1:]), expected[f"{name}__call_inputs"])
        assert log.stored[1:] == expected[f"{name}__call_store_kv"].bool().tolist()
        assert out.nfe - sum(log.stored) == setting["nfe_denoise_calls"]
    summary = out.step_summary()
    assert summary["full"] == 1 and summary["cached"] == out.nfe - 1  # the prefill, then block rows only
    assert max(summary["rows_per_step"][1:]) == setting["kwargs"]["block_length"]


@pytest.mark.parametrize("name", GEN_CASES)
def test_without_a_cache_the_tokens_are_the_same(golden, name):
    """cache=none recomputes the canvas under the block-causal mask at every step: no prefill or store forward."""
    model, expected, meta = golden
    out = _run_golden(model, expected, meta[name], cache=build_cache("none"))
    assert torch.equal(out.sequences, expected[name])
    denoise = meta[name].get("nfe_denoise_calls")
    if denoise is not None:
        assert out.nfe == denoise
    assert all(s.forward == "full" and s.rows == expected[name].shape[1] for s in out.steps)


def test_torch_topk_breaks_ties_as_the_goldens_need():
    """NOTES.md's examples of torch 2.13 CPU topk over -inf ties (the quirk's overwrites depend on them)."""
    inf = -torch.inf
    cases = [([inf, 0.5, inf, inf], [1, 3]), ([inf] * 5 + [0.5, inf, inf], [5, 6]), ([inf, inf, 0.5, inf], [2, 3]),
             ([inf, inf, inf, 0.5], [3, 2]), ([0.5, inf, inf, inf], [0, 2]), ([inf] * 6 + [0.5, inf], [6, 5]),
             ([inf] * 7 + [0.5], [7, 5]), ([inf] * 4, [2, 3]), ([inf] * 8, [6, 5])]
    for values, indices in cases:
        assert torch.topk(torch.tensor(values), 2).indices.tolist() == indices, values
        assert block_rules.commit_static(torch.tensor(values), 2).nonzero().flatten().sort().values.tolist() == sorted(
            indices)


def test_the_quirk_overwrites_committed_tokens_only_with_fewer_steps_than_the_block(golden):
    """With 2 steps per block of 4 the first block's quota (2) exceeds its masks left, and topk picks a committed
    position (NOTES: position 39, 502 -> 464); with 4 steps per block the quota is 1 and a committed token stays."""
    model, expected, meta = golden
    logs = {}
    for name in ("gen_b4_s2_static", "gen_b4_s4_static"):
        log = CallLog(model)
        try:
            _run_golden(model, expected, meta[name], attention=log.method)
        finally:
            log.close()
        logs[name] = log
    quirk = logs["gen_b4_s2_static"]
    assert quirk.rows[2] == (36, 40) and int(quirk.inputs[2][0, 3]) == 502  # committed by the first step
    assert quirk.rows[3] == (36, 40) and quirk.stored[3] and int(quirk.inputs[3][0, 3]) == 464  # overwritten
    plain = logs["gen_b4_s4_static"]
    for i in range(2, len(plain.inputs)):
        if plain.rows[i] == plain.rows[i - 1]:  # consecutive forwards of one block
            kept = plain.inputs[i - 1] != model.args.mask_token_id
            assert torch.equal(plain.inputs[i][kept], plain.inputs[i - 1][kept])


# -- the sampler beyond the goldens ---------------------------------------------------------------


def _left_pad(prompts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    from sparsed.sampling.common import left_pad

    return left_pad([p[0].tolist() for p in prompts], 0)


@pytest.mark.parametrize(("cache", "block", "per_block", "remasking", "threshold"), [
    ("block_prefix", 4, 2, "low_confidence_static", None), ("block_prefix", 4, 4, "low_confidence_dynamic", 0.5),
    ("none", 4, 2, "low_confidence_dynamic", 0.5), ("block_prefix", 8, 4, "low_confidence_static", None)])
def test_a_padded_batch_gives_each_row_what_it_gets_alone(cache, block, per_block, remasking, threshold):
    model = sharp_sdar()
    prompts = [_prompt(n, 10 + n) for n in (13, 22, 3, 16)]  # different whole blocks and tails
    kw = dict(steps=per_block * 16 // block, gen_length=16, block_length=block, remasking=remasking, threshold=threshold)
    alone = [generate(model, p, cache=build_cache(cache), **kw) for p in prompts]
    ids, mask = _left_pad(prompts)
    out = generate(model, ids, attention_mask=mask, cache=build_cache(cache), **kw)
    P = ids.shape[1]
    for r, (p, single) in enumerate(zip(prompts, alone, strict=True)):
        n = p.shape[1]
        got = out.sequences[r, P - n : P - n + single.sequences.shape[1]]
        assert torch.equal(got, single.sequences[0]), r
        assert single.sequences.shape[1] % block == 0  # each row's own canvas is whole blocks
    assert out.sequences.shape[1] == P + max(s.sequences.shape[1] - p.shape[1] for s, p in zip(alone, prompts, strict=True))
    with torch.no_grad():  # padding queries see only padding keys (fully masked rows): SDPA gives zeros, not NaN
        assert torch.isfinite(model.hidden_states(ids, attention_mask=mask, block=block)).all()


def test_sampling_is_seeded_and_filters_apply():
    model = sharp_sdar()
    p = _prompt(10, 4)
    kw = dict(steps=8, gen_length=8, block_length=4, temperature=1.0, remasking="low_confidence_static")
    a = generate(model, p, generator=torch.Generator().manual_seed(5), **kw)
    b = generate(model, p, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.sequences, b.sequences)
    c = generate(model, p, generator=torch.Generator().manual_seed(6), **kw)
    assert not torch.equal(a.sequences, c.sequences)
    top1 = [generate(model, p, generator=torch.Generator().manual_seed(s), top_k=1, **kw).sequences for s in (5, 6)]
    assert torch.equal(top1[0], top1[1])  # one token left per position: the seed no longer matters
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0]])
    assert torch.isinf(block_rules.top_k_logits(logits, 2))[0].tolist() == [False, False, True, True]
    # nucleus 0.7: softmax is [.61, .22, .14, .03]; the second token is kept (mass before it .61 <= .7)
    assert torch.isinf(block_rules.top_p_logits(logits, 0.7))[0].tolist() == [False, False, True, True]


def test_stop_ids_end_decoding_after_the_block_holding_one():
    model = sharp_sdar()
    p = _prompt(9, 6)
    full = generate(model, p, steps=16, gen_length=16, block_length=4)
    first = int(full.sequences[0, 9])  # the first generated token, in the prompt's tail block
    stopped = generate(model, p, steps=16, gen_length=16, block_length=4, stop_ids=[first])
    assert torch.equal(stopped.sequences[0, :12], full.sequences[0, :12])
    assert (stopped.sequences[0, 12:] == model.args.mask_token_id).all() and stopped.nfe < full.nfe


def test_attention_methods_see_the_cache_layout():
    model = sharp_sdar()
    method = build_method("sliding_window", {"ws": 6})
    seen = []
    forward = method.forward

    def recorded(layer, q, k, v, key_valid=None, layout=None):  # noqa: ANN001, ANN202
        if layer == 0:
            seen.append((layout.span, layout.key_len, layout.block, q.shape[2], k.shape[2], method.where))
        return forward(layer, q, k, v, key_valid, layout)

    method.forward = recorded
    out = generate(model, _prompt(10, 7), steps=4, gen_length=8, block_length=4, attention=method)
    span, key_len, block, lq, lk, where = seen[0]  # the prefill
    assert (span, key_len, block, lq, lk) == ((0, 8), 8, 4, 8, 8) and where.refresh and not where.cached
    span, key_len, block, lq, lk, where = seen[1]  # the first denoising step of block 2
    assert (span, key_len, lq, lk, where.block, where.block_lo, where.block_hi) == ((8, 12), 12, 4, 12, 2, 8, 12)
    assert where.cached and not where.refresh
    assert sum(w.refresh for *_, w in seen) == 1 + 3 and len(seen) == out.nfe  # prefill + a store per block


@pytest.mark.parametrize(("method", "settings"), [("dense", {}), ("sliding_window", {"ws": 8}),
                                                  ("streaming_llm", {"ws": 8, "sinks": 2})])
def test_every_layout_method_runs_cached_and_uncached_alike(method, settings):
    """The methods that serve layouts run on this family; the exact cache changes no token under any of them."""
    model = sharp_sdar()
    p = _prompt(14, 8)
    kw = dict(steps=8, gen_length=16, block_length=4, remasking="low_confidence_dynamic", threshold=0.6)
    runs = {c: generate(model, p, attention=build_method(method, settings), cache=build_cache(c), **kw)
            for c in ("block_prefix", "none")}
    assert torch.equal(runs["block_prefix"].sequences, runs["none"].sequences)
    if method != "dense":  # the pattern is not the dense one
        dense = generate(model, p, attention=build_method("dense"), **kw)
        assert not torch.equal(dense.sequences, runs["block_prefix"].sequences)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"block_length": None}, "gen.block_length must be set"),
    ({"gen_length": 10}, "not divisible by gen.block_length=4"),
    ({"steps": 6}, r"gen.steps=6 is not divisible by the number of blocks \(4"),
    ({"remasking": "low_confidence"}, "not allowed for SDAR; choose one of: low_confidence_static, low_confidence_dynamic"),
    ({"remasking": "low_confidence_dynamic", "threshold": None}, "needs gen.threshold"),
    ({"threshold": 0.9}, "low_confidence_dynamic only"),
    ({"temperature": -1.0}, "must be >= 0"),
    ({"top_k": -1}, "gen.top_k=-1"),
    ({"top_p": 0.0}, r"gen.top_p=0.0 is outside \(0, 1\]"),
])
def test_bad_sampler_settings_are_one_line(kwargs, message):
    base = dict(gen_length=16, block_length=4, steps=16, remasking="low_confidence_static", threshold=None,
                temperature=0.0, top_k=None, top_p=None)
    with pytest.raises(ConfigError, match=message):
        check_sdar_settings(**(base | kwargs))


def test_transfer_counts_spread_the_block():
    assert block_rules.transfer_counts(4, 4) == [1, 1, 1, 1]
    assert block_rules.transfer_counts(8, 3) == [3, 3, 2]
    assert block_rules.transfer_counts(4, 8) == [1, 1, 1, 1, 0, 0, 0, 0]


# -- run.py and the config checks -----------------------------------------------------------------


def _checkpoint_with_tokenizer(folder: Path) -> Path:
    """The golden checkpoint plus a byte-level tokenizer small enough for its 512-token vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tests.tokenizer_util import CHAT_TEMPLATE, SPECIAL_TOKENS

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (folder / name).symlink_to(TINY / name)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["What is the sum of the numbers? The answer is 42."] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   mask_token="<|mdm_mask|>", chat_template=CHAT_TEMPLATE)
    assert len(fast) < 512
    fast.save_pretrained(str(folder))
    return folder


FAST = ["prompt=short", "gen.gen_length=8", "gen.steps=8", "run.warmup=false", "run.progress=false"]


def test_run_py_generates_with_the_real_layout(golden, tmp_path):
    from tests.test_run_cli import run_py

    ckpt = _checkpoint_with_tokenizer(tmp_path / "ckpt")
    proc = run_py("model=sdar", f"model.path={ckpt}", "attention=dense", "cache=block_prefix", *FAST,
                  f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "a" / "result.json").read_text())
    assert r["config"]["model"]["arch"] == "sdar" and r["cache"]["name"] == "block_prefix"
    assert r["steps"]["full_forwards"] == 1 and r["steps"]["cached_forwards"] == r["nfe"] - 1
    assert set(r["steps"]["rows_per_step"][1:]) == {4} and r["memory"]["kv_cache_gib"] > 0
    assert 8 <= len(r["answer_token_ids"]) < 12  # gen_length, padded to whole blocks of 4

    proc = run_py("model=trado", f"model.path={ckpt}", "attention=sliding_window", "sliding_window.ws=16", "cache=none",
                  *FAST, f"hydra.run.dir={tmp_path / 'b'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    r = json.loads((tmp_path / "b" / "result.json").read_text())
    assert r["config"]["gen"]["threshold"] == 0.9 and r["steps"]["cached_forwards"] == 0
    assert r["attention"]["density_mean"] < 1.0


def test_sdar_configs_validate_and_refuse_what_cannot_run():
    from sparsed.config import validate
    from tests.test_config import cfg_with

    for overrides in (["model=sdar", "attention=dense", "cache=block_prefix"],
                      ["model=trado", "attention=streaming_llm"],
                      ["model=sdar_small_random", "attention=sliding_window", "cache=block_prefix"],
                      ["model=small_bd", "attention=losa", "cache=block_prefix"],
                      ["model=sdar", "attention=dense", "cache=none"]):
        validate(cfg_with(*overrides))
    refused = [
        (["model=sdar"], "attention=sparsed does not serve block-causal models .*methods that do: dense"),
        (["model=sdar", "attention=dense", "cache=prefix"], "cache=prefix is defined for model families llada, dream"),
        (["model=llada_small_random", "attention=dense", "cache=block_prefix"],
         "cache=block_prefix is defined for model families sdar"),
        (["model=sdar", "attention=dense", "gen.remasking=low_confidence_static"], "low_confidence_dynamic only"),
        (["model=sdar", "attention=dense", "gen.cfg_scale=1.0"], "no classifier-free guidance"),
    ]
    for overrides, message in refused:
        with pytest.raises(ConfigError, match=message):
            validate(cfg_with(*overrides))


def test_random_init_builds_the_8b_architecture_on_meta():
    from omegaconf import OmegaConf

    from tests.test_config import cfg_with

    cfg = cfg_with("model=sdar", "model.init=random")
    args = args_from_config(dict(OmegaConf.to_container(cfg.model.architecture)))
    assert (args.dim, args.n_layers, args.n_heads, args.n_kv_heads, args.head_dim, args.vocab_size) == (
        4096, 36, 32, 8, 128, 151936)
    with torch.device("meta"):
        n = sum(p.numel() for p in DiffusionLM(args).parameters())
    assert 8.1e9 < n < 8.3e9  # SDAR-8B-Chat's index: 16.38 GB of bf16 = 8.19B parameters
