"""Sampler behaviour beyond the goldens: batches with left padding, CFG, sampling, timing, LM-head economy."""

from __future__ import annotations

import pytest
import torch

from sparsed.attention import build_method
from sparsed.config_errors import ConfigError
from sparsed.models.loading import random_model
from sparsed.models.transformer import ModelArgs
from sparsed.sampling import diffusion_generate, generate

ARGS = dict(vocab_size=300, dim=64, n_layers=2, n_heads=4, ffn_dim=128, norm_eps=1e-5, rope_theta=1e4, mask_token_id=299)


def tiny(arch: str):
    kv = 2 if arch == "dream" else 4
    args = ModelArgs(arch=arch, n_kv_heads=kv, qkv_bias=arch == "dream", shift_logits=arch == "dream",
                     rope_in_fp32=arch == "llada", **ARGS)
    torch.manual_seed(0)
    model = random_model(args, device="cpu", dtype="fp32", seed=3)
    with torch.no_grad():  # sharper logits than N(0, 0.02) so that decisions are not near-ties
        model.head.weight.mul_(20)
        for layer in model.layers:
            layer.wq.weight.mul_(5)
            layer.wk.weight.mul_(5)
    return model


def run(model, prompt, mask=None, method=None, **kw):
    if model.args.arch == "llada":
        return generate(model, prompt, steps=8, gen_length=16, block_length=8, attention_mask=mask, attention=method, **kw)
    return diffusion_generate(model, prompt, max_new_tokens=16, steps=8, attention_mask=mask, attention=method,
                              alg="maskgit_plus", **kw)


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("method", [None, "sparsed"])
def test_left_padding_does_not_change_a_row(arch, method):
    model = tiny(arch)
    g = torch.Generator().manual_seed(1)
    short, long = torch.randint(0, 290, (1, 37), generator=g), torch.randint(0, 290, (1, 50), generator=g)
    settings = dict(skip=0.25, select=0.5, block_size=16, compat="paper")
    make = (lambda: build_method("sparsed", dict(settings), num_heads=4)) if method else (lambda: None)
    alone_short = run(model, short, method=make()).generated
    alone_long = run(model, long, method=make()).generated
    pad = long.shape[1] - short.shape[1]
    batch = torch.cat([torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1), long])
    mask = torch.ones_like(batch)
    mask[0, :pad] = 0
    out = run(model, batch, mask=mask, method=make()).generated
    assert torch.equal(out[0], alone_short[0])
    assert torch.equal(out[1], alone_long[0])


def test_llada_cfg_random_remasking_and_temperature():
    model = tiny("llada")
    prompt = torch.randint(0, 290, (1, 20), generator=torch.Generator().manual_seed(2))
    base = run(model, prompt)
    cfg = run(model, prompt, cfg_scale=2.0)
    assert cfg.nfe == 2 * base.nfe and cfg.sequences.shape == base.sequences.shape
    rnd = run(model, prompt, remasking="random", generator=torch.Generator().manual_seed(0))
    assert not (rnd.generated == 299).any()
    hot1 = run(model, prompt, temperature=1.0, generator=torch.Generator().manual_seed(5)).sequences
    hot2 = run(model, prompt, temperature=1.0, generator=torch.Generator().manual_seed(5)).sequences
    assert torch.equal(hot1, hot2)  # seeded Gumbel noise is reproducible


@pytest.mark.parametrize("alg", ["origin", "maskgit_plus", "topk_margin", "entropy"])
def test_dream_algorithms_fill_the_canvas(alg):
    model = tiny("dream")
    prompt = torch.randint(0, 290, (2, 12), generator=torch.Generator().manual_seed(3))
    out = diffusion_generate(model, prompt, max_new_tokens=10, steps=5, alg=alg, temperature=0.5, top_p=0.9,
                             generator=torch.Generator().manual_seed(0))
    assert out.generated.shape == (2, 10) and len(out.step_times) == 5 and out.nfe == 5
    if alg != "origin":
        assert not (out.generated == 299).any()


def test_lm_head_only_on_needed_positions(monkeypatch):
    model = tiny("llada")
    rows = []
    original = model.head.forward
    monkeypatch.setattr(model.head, "forward", lambda h: rows.append(h.numel() // h.shape[-1]) or original(h))
    generate(model, torch.randint(0, 290, (1, 100)), steps=4, gen_length=16, block_length=8)
    assert max(rows) <= 16  # never the 100 prompt positions


def test_bad_sampler_settings_are_named():
    model = tiny("llada")
    with pytest.raises(ConfigError, match="gen.gen_length=10 is not divisible by gen.block_length=4"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), steps=4, gen_length=10, block_length=4)
    with pytest.raises(ConfigError, match="gen.alg='beam'"):
        diffusion_generate(tiny("dream"), torch.zeros(1, 3, dtype=torch.long), alg="beam")
