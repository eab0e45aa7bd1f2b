"""Block-wise FP8 checkpoints (sparsed/models/fp8.py, scripts/quantize_fp8.py): the rounding bound, the
layout, and a quantized SDAR-layout checkpoint loaded by ``load_model`` next to its bf16 source."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sparsed.config_errors import ConfigError
from sparsed.models.fp8 import (
    FP8_MAX,
    SCALE_SUFFIX,
    block_size_of,
    dequantize_blockwise,
    dequantize_state_dict,
    quantize_blockwise,
    quantize_state_dict,
)
from sparsed.models.loading import args_for, load_model, random_model
from sparsed.models.transformer import DiffusionLM, ModelArgs
from sparsed.sampling.sdar import generate
from sparsed.training.checkpoint import export_inference
from tests.conftest import fixture_dir

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "sparsed" / "assets" / "tokenizer"


def _script():
    spec = importlib.util.spec_from_file_location("quantize_fp8", ROOT / "scripts" / "quantize_fp8.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the rounding bound ----------------------------------------------------------------------------


def _bound(w: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """e4m3's rounding, per element: half an ulp of 3 mantissa bits (<= 2**-4 of the value) in the normal range,
    half the subnormal spacing 2**-9 (in units of the block's scale) below it; 1e-6 relative for fp32 arithmetic."""
    s = scale_inv.double().repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)[: w.shape[0], : w.shape[1]]
    return torch.maximum(w.abs() * 2.0**-4, s * 2.0**-10) + w.abs() * 1e-6


@pytest.mark.parametrize("shape, block", [((300, 200), (128, 128)), ((128, 256), (128, 128)), ((1, 1), (128, 128)),
                                          ((130, 1000), (128, 128)), ((77, 50), (64, 32))])
def test_the_rounding_error_is_e4m3s_on_every_element(shape, block):
    g = torch.Generator().manual_seed(sum(shape))
    # magnitudes spread over ~10 binades across rows and columns, so blocks get very different scales
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    w *= torch.exp(2 * torch.randn(shape[0], 1, generator=g, dtype=torch.float64))
    w *= torch.exp(torch.randn(1, shape[1], generator=g, dtype=torch.float64))
    if shape[0] > block[0] and shape[1] > block[1]:
        w[: block[0], block[1] : 2 * block[1]] = 0  # a whole zero block
    w = w.float()
    q, s = quantize_blockwise(w, block)
    assert q.dtype == torch.float8_e4m3fn and q.shape == w.shape
    assert s.dtype == torch.float32 and tuple(s.shape) == (math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1]))
    assert bool(torch.isfinite(s).all()) and bool((s > 0).all())
    back = dequantize_blockwise(q, s, torch.float64, block)
    ref = w.double()
    assert bool(((back - ref).abs() <= _bound(ref, s, block)).all())
    assert bool((back[ref == 0] == 0).all())  # zeros (and zero blocks) stay exactly zero
    # every non-zero block uses e4m3's whole range: its largest magnitude is stored as 448
    tiles = torch.zeros(s.shape[0] * block[0], s.shape[1] * block[1])
    tiles[: shape[0], : shape[1]] = q.float().abs()
    top = tiles.view(s.shape[0], block[0], s.shape[1], block[1]).amax(dim=(1, 3))
    assert bool((top[top > 0] == FP8_MAX).all())
    if shape == (300, 200):
        assert float(s[0, 1]) == 1.0 and float(top[0, 1]) == 0.0
    assert dequantize_blockwise(q, s, torch.bfloat16, block).dtype == torch.bfloat16


def test_bf16_input_and_bad_inputs():
    w = torch.randn(200, 130, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    q, s = quantize_blockwise(w)
    ref = w.double()
    assert bool(((dequantize_blockwise(q, s, torch.float64) - ref).abs() <= _bound(ref, s, (128, 128))).all())
    with pytest.raises(ValueError, match="2-D"):
        quantize_blockwise(torch.ones(4))
    with pytest.raises(ValueError, match="inf or nan"):
        quantize_blockwise(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="scale_inv of shape"):
        dequantize_blockwise(q, s[:1])


def test_state_dicts_quantize_2d_weights_unless_kept():
    g = torch.Generator().manual_seed(2)
    state = {"model.embed_tokens.weight": torch.randn(300, 160, generator=g).bfloat16(),
             "lm_head.weight": torch.randn(300, 160, generator=g).bfloat16(),
             "model.norm.weight": torch.ones(160, dtype=torch.bfloat16)}
    q = quantize_state_dict(state, keep=("lm_head",))
    assert q["model.embed_tokens.weight"].dtype == torch.float8_e4m3fn
    assert q["model.embed_tokens.weight" + SCALE_SUFFIX].shape == (3, 2)
    assert torch.equal(q["lm_head.weight"], state["lm_head.weight"]) and "lm_head.weight" + SCALE_SUFFIX not in q
    assert torch.equal(q["model.norm.weight"], state["model.norm.weight"])
    back = dequantize_state_dict(q)
    assert set(back) == set(state) and back["model.embed_tokens.weight"].dtype == torch.float32
    assert back["lm_head.weight"].dtype == torch.bfloat16  # what is not quantized comes back as it was
    with pytest.raises(ConfigError, match="has no model.embed_tokens.weight_scale_inv"):
        dequantize_state_dict({k: v for k, v in q.items() if not k.endswith(SCALE_SUFFIX)})
    with pytest.raises(ConfigError, match="scales no weight"):
        dequantize_state_dict({"x.weight" + SCALE_SUFFIX: torch.ones(1, 1)})
    with pytest.raises(ValueError, match="already quantized"):
        quantize_state_dict(q)


# -- an SDAR-layout checkpoint ----------------------------------------------------------------------

V = 64


def _copy_sdar(steps: int = 60) -> DiffusionLM:
    """A tiny SDAR model (no dimension a multiple of 128: every block is an edge block) trained for a few
    seconds to copy the prompt's token into masked positions, so its greedy choices are decisive as a
    trained model's are (a random-init model's top-2 logits are near-ties, which any rounding can swap)."""
    args = ModelArgs(arch="sdar", vocab_size=V, dim=160, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=200, norm_eps=1e-6,
                     rope_theta=1e6, qkv_bias=False, mask_token_id=V - 1, eos_token_id=V - 2, pad_token_id=V - 2,
                     rope_in_fp32=False, head_dim_override=40, qk_norm=True, block_causal=True, norm_weight_fp32=True)
    model = random_model(args, device="cpu", dtype="fp32", seed=0).train().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # matrices this small gain nothing from threads, and on a busy machine they spin
    try:
        for _ in range(steps):
            tok = torch.randint(0, V - 2, (16, 1), generator=g).expand(16, 16)
            masked = torch.rand(16, 16, generator=g) < torch.rand(16, 1, generator=g)
            masked[:, 0] = False
            logits = model.head(model.hidden_states(torch.where(masked, V - 1, tok), block=4))
            loss = torch.nn.functional.cross_entropy(logits[masked], tok[masked])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.5
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp8")
    src = export_inference(_copy_sdar(), out, TOKENIZER)  # bf16, SDAR layout, tokenizer files
    (src / "README.md").write_text("a tiny test model\n")
    (src / "log.jsonl").write_text('{"step": 1}\n')
    dst = out / "fp8"
    errors = _script().quantize_checkpoint(src, dst)
    return src, dst, errors


def test_the_folder_is_copied_and_the_weights_halved(checkpoints):
    src, dst, errors = checkpoints
    for name in ("tokenizer.json", "tokenizer_config.json", "README.md", "log.jsonl"):
        assert (dst / name).read_bytes() == (src / name).read_bytes()
    a, b = json.loads((src / "config.json").read_text()), json.loads((dst / "config.json").read_text())
    assert b.pop("quantization_config") == {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                            "weight_block_size": [128, 128]}
    assert a == b
    with safe_open(str(dst / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.float8_e4m3fn
        assert f.get_tensor("lm_head.weight_scale_inv").shape == (1, 2)
        assert f.get_tensor("model.norm.weight").dtype == torch.bfloat16
    assert (dst / "model.safetensors").stat().st_size < 0.55 * (src / "model.safetensors").stat().st_size
    # the report: e4m3 keeps 3 mantissa bits, so an element is off by at most 2**-4 of itself; near a block's
    # amax (448 = 1.75 * 2**8, ulp 32) that is 16/448 of the amax
    assert len(errors) == 9 and all(r["max_rel"] <= 16 / 448 + 1e-6 and r["rms_rel"] < 0.03 for r in errors.values())


def test_fp8_logits_are_close_to_the_bf16_sources(checkpoints):
    src, dst, _ = checkpoints
    check = _script().compare_logits(src, dst, n_seqs=4, length=64)
    # Each weight carries e4m3 rounding of ~2.7% rms of itself (the report above); a logit goes through the
    # embedding, 7 matrices per layer and the head, whose independent errors add roughly in quadrature:
    # sqrt(16) * 2.7% ~ 11% of the logits at worst (the residual stream and the norms only damp this).
    # Measured: 3.5% overall, the largest difference 0.42 against logits up to ~7.
    assert 0 < check["rms_rel"] < 0.11  # (0: the fp8 folder would not have been quantized at all)
    assert check["max_abs"] < 0.11 * check["logit_absmax"]
    # random token sequences are far from the copy task, so some top-2 logits are close: most, not all, agree
    assert check["top1_agree"] > 0.95


def test_fp8_greedy_tokens_are_the_bf16_sources(checkpoints):
    src, dst, _ = checkpoints
    a, b = load_model(str(src), device="cpu", dtype="fp32"), load_model(str(dst), device="cpu", dtype="fp32")
    prompt = torch.tensor([[5, 5, 5, 5, 5, 5]])
    kw = dict(steps=8, gen_length=8, block_length=4, temperature=0.0)
    ga, gb = generate(a, prompt, **kw).sequences, generate(b, prompt, **kw).sequences
    assert torch.equal(ga, gb)
    assert ga[0, 6:].tolist() == [5] * 10  # the source model does its task (the canvas pads to whole blocks)
    assert load_model(str(dst), device="cpu", dtype="bf16").head.weight.dtype == torch.bfloat16


def test_scales_and_weights_may_sit_in_different_shards(checkpoints, tmp_path):
    src, dst, _ = checkpoints
    state = load_file(str(dst / "model.safetensors"))
    first = {k: v for k, v in state.items() if not k.endswith(SCALE_SUFFIX)}
    shards = {"model-00001-of-00002.safetensors": first,
              "model-00002-of-00002.safetensors": {k: v for k, v in state.items() if k not in first}}
    for name, part in shards.items():
        save_file(part, str(tmp_path / name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text((dst / "config.json").read_text())
    a, b = load_model(str(dst), device="cpu", dtype="fp32"), load_model(str(tmp_path), device="cpu", dtype="fp32")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


def test_the_cli_keeps_named_tensors_and_reports(checkpoints, tmp_path, capsys):
    src, _, _ = checkpoints
    _script().main([str(src), str(tmp_path / "kept"), "--keep", "embed_tokens", "--keep", "lm_head"])
    out = capsys.readouterr().out
    assert "weights:" in out and "model.layers.*.mlp.up_proj.weight" in out and "top-1 agreement" in out
    with safe_open(str(tmp_path / "kept" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("lm_head.weight").dtype == torch.bfloat16
        assert "model.embed_tokens.weight_scale_inv" not in set(f.keys())
        assert f.get_tensor("model.layers.0.mlp.up_proj.weight").dtype == torch.float8_e4m3fn
    cfg = json.loads((tmp_path / "kept" / "config.json").read_text())
    assert cfg["quantization_config"]["modules_to_not_convert"] == ["embed_tokens", "lm_head"]


def test_another_family_loads_fp8_the_same_way(tmp_path):
    src = fixture_dir("llada-tiny")
    _script().quantize_checkpoint(src, tmp_path)
    a, b = load_model(str(src), device="cpu", dtype="fp32"), load_model(str(tmp_path), device="cpu", dtype="fp32")
    ids = torch.randint(0, a.args.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    la, lb = a(ids), b(ids)
    assert float((la - lb).norm() / la.norm()) < 0.11


def test_an_unknown_quant_method_is_one_line(checkpoints, tmp_path):
    src, dst, _ = checkpoints
    cfg = json.loads((dst / "config.json").read_text())
    cfg["quantization_config"]["quant_method"] = "gptq"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "model.safetensors").symlink_to(dst / "model.safetensors")
    for load in (lambda: load_model(str(tmp_path), device="cpu"), lambda: args_for(tmp_path)):
        with pytest.raises(ConfigError) as info:
            load()
        msg = str(info.value)
        assert "\n" not in msg
        assert msg.startswith("config.json quantization_config.quant_method='gptq' is not allowed; choose one of: fp8")
    with pytest.raises(ConfigError, match="weight_block_size"):
        block_size_of({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128]}})
    assert block_size_of({}) is None
