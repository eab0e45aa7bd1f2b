"""Dream (Dream-org/Dream-v0-Instruct-7B): Qwen2 layout, q/k/v bias, GQA, logits shifted by one."""

from __future__ import annotations

import re
from typing import Any

from sparsed.config_errors import ConfigError
from sparsed.models.registry import Family
from sparsed.models.transformer import ModelArgs

MODEL_TYPES = ("dream",)

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "wq.weight",
    "self_attn.q_proj.bias": "wq.bias",
    "self_attn.k_proj.weight": "wk.weight",
    "self_attn.k_proj.bias": "wk.bias",
    "self_attn.v_proj.weight": "wv.weight",
    "self_attn.v_proj.bias": "wv.bias",
    "self_attn.o_proj.weight": "wo.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "w_gate.weight",
    "mlp.up_proj.weight": "w_up.weight",
    "mlp.down_proj.weight": "w_down.weight",
}
_TOP = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight", "lm_head.weight": "head.weight"}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")


def args_from_config(cfg: dict[str, Any]) -> ModelArgs:
    if cfg.get("tie_word_embeddings"):
        raise ConfigError("Dream config tie_word_embeddings=true is not supported (the released models are untied)")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"Dream config hidden_act={cfg['hidden_act']!r} is not supported (supported: silu)")
    if cfg.get("rope_scaling"):
        raise ConfigError("Dream config rope_scaling is not supported (the released models use none)")
    return ModelArgs(
        arch="dream",
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"],
        n_heads=cfg["num_attention_heads"],
        n_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
        ffn_dim=cfg["intermediate_size"],
        norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=cfg.get("rope_theta", 1e6),
        qkv_bias=True,
        mask_token_id=cfg.get("mask_token_id", 151666),
        eos_token_id=cfg.get("eos_token_id"),
        pad_token_id=cfg.get("pad_token_id"),
        shift_logits=True,
        rope_in_fp32=False,
        max_length=None,  # max_position_embeddings (131072) is not the training length
    )


def map_name(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    m = _LAYER_RE.fullmatch(name)
    if m and m.group(2) in _LAYER:
        return f"layers.{m.group(1)}.{_LAYER[m.group(2)]}"
    return None


FAMILY = Family("dream", MODEL_TYPES, args_from_config, map_name, sampler="sparsed.sampling.dream:sample",
                gen_checker="sparsed.sampling.dream:check_gen")
