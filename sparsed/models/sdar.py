"""SDAR and TraDo (JetLM/SDAR-*-Chat, Gen-Verse/TraDo-*): Qwen3-layout block-diffusion models.

The network is Qwen3's: RMSNorm, q/k RMSNorm over head_dim before RoPE, GQA, SwiGLU, untied LM head,
no biases, ``head_dim`` stated apart from ``hidden_size / num_attention_heads``. What makes it a
diffusion model is the attention mask of its sampler: block-causal (bidirectional inside a block of the
sampler's block length, causal across blocks), and the logit at position i predicts token i (no shift).
TraDo checkpoints are SDAR checkpoints fine-tuned with TraceRL (``model_type: sdar``, same code).

Numerics follow the released ``modeling_sdar.py`` where a bf16 run can tell: cos/sin are computed in
float32 and cast to the model dtype before they rotate q and k (``rope_in_fp32=False``), and its
RMSNorm is flash-attn's fused kernel, which applies the weight in float32 and rounds once
(``norm_weight_fp32``). In float32 both are exactly the transformers Qwen3 forward.
"""

from __future__ import annotations

import re
from typing import Any

from sparsed.config_errors import ConfigError
from sparsed.models.registry import Family
from sparsed.models.transformer import ModelArgs

MODEL_TYPES = ("sdar",)

_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "wq.weight",
    "self_attn.k_proj.weight": "wk.weight",
    "self_attn.v_proj.weight": "wv.weight",
    "self_attn.o_proj.weight": "wo.weight",
    "self_attn.q_norm.weight": "q_norm.weight",
    "self_attn.k_norm.weight": "k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "w_gate.weight",
    "mlp.up_proj.weight": "w_up.weight",
    "mlp.down_proj.weight": "w_down.weight",
}
_TOP = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight", "lm_head.weight": "head.weight"}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")
_INTERNAL_RE = re.compile(r"layers\.(\d+)\.(.+)")


def _unsupported(cfg: dict[str, Any]) -> str | None:
    if cfg.get("tie_word_embeddings"):
        return "tie_word_embeddings=true (the released SDAR/TraDo checkpoints have a separate lm_head)"
    if cfg.get("hidden_act", "silu") != "silu":
        return f"hidden_act={cfg['hidden_act']!r} (supported: silu)"
    if cfg.get("rope_scaling"):
        return "rope_scaling (the released checkpoints use none)"
    if cfg.get("attention_bias"):
        return "attention_bias=true (the released checkpoints have no q/k/v/o biases)"
    if cfg.get("use_sliding_window"):
        return "use_sliding_window=true"
    return None


def args_from_config(cfg: dict[str, Any]) -> ModelArgs:
    problem = _unsupported(cfg)
    if problem:
        raise ConfigError(f"SDAR config {problem} is not supported")
    if cfg.get("mask_token_id") is None:
        raise ConfigError("SDAR config.json has no mask_token_id (the released configs state it, e.g. 151669)")
    n_heads = cfg["num_attention_heads"]
    return ModelArgs(
        arch="sdar",
        vocab_size=cfg["vocab_size"],
        dim=cfg["hidden_size"],
        n_layers=cfg["num_hidden_layers"],
        n_heads=n_heads,
        n_kv_heads=cfg.get("num_key_value_heads") or n_heads,
        ffn_dim=cfg["intermediate_size"],
        norm_eps=cfg.get("rms_norm_eps", 1e-6),
        rope_theta=cfg.get("rope_theta", 1e6),
        qkv_bias=False,
        mask_token_id=cfg["mask_token_id"],
        eos_token_id=_first(cfg.get("eos_token_id")),
        pad_token_id=cfg.get("pad_token_id"),
        shift_logits=False,
        rope_in_fp32=False,
        max_length=None,  # max_position_embeddings (32768) is Qwen3's, not the diffusion training length
        head_dim_override=cfg.get("head_dim"),
        qk_norm=True,
        block_causal=True,
        norm_weight_fp32=True,
    )


def _first(value: Any) -> int | None:  # noqa: ANN401 - an id or a list of ids
    if isinstance(value, list):
        return value[0] if value else None
    return value


def config_from_args(a: ModelArgs) -> dict[str, Any]:
    """An SDAR ``config.json`` for ``a`` (the key set of the released SDAR-4B/8B-Chat configs that matter)."""
    return {
        "architectures": ["SDARForCausalLM"], "model_type": "sdar", "hidden_size": a.dim,
        "num_hidden_layers": a.n_layers, "num_attention_heads": a.n_heads, "num_key_value_heads": a.n_kv_heads,
        "head_dim": a.head_dim, "intermediate_size": a.ffn_dim, "vocab_size": a.vocab_size,
        "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_theta, "rope_scaling": None, "hidden_act": "silu",
        "attention_bias": False, "tie_word_embeddings": False, "use_sliding_window": False,
        "mask_token_id": a.mask_token_id, "eos_token_id": a.eos_token_id, "pad_token_id": a.pad_token_id,
        "use_cache": False,
    }


def map_name(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    m = _LAYER_RE.fullmatch(name)
    if m and m.group(2) in _LAYER:
        return f"layers.{m.group(1)}.{_LAYER[m.group(2)]}"
    return None


def checkpoint_name(internal: str) -> str:
    for k, v in _TOP.items():
        if v == internal:
            return k
    m = _INTERNAL_RE.fullmatch(internal)
    inverse = {v: k for k, v in _LAYER.items()}
    if m is None or m.group(2) not in inverse:
        raise KeyError(f"{internal} has no SDAR checkpoint name")
    return f"model.layers.{m.group(1)}.{inverse[m.group(2)]}"


FAMILY = Family("sdar", MODEL_TYPES, args_from_config, map_name, sampler="sparsed.sampling.sdar:sample",
                gen_checker="sparsed.sampling.sdar:check_gen", block_causal=True,
                config_from_args=config_from_args, checkpoint_name=checkpoint_name)
