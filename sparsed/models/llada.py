"""LLaDA (GSAI-ML/LLaDA-8B-Instruct, LLaDA-1.5, and the project's own small LLaDA-layout models).

Config keys follow LLaDA's ``config.json`` (``d_model``, ``n_heads``, ``mlp_hidden_size``, ...); parameter
names follow its checkpoint (``model.transformer.blocks.N.q_proj.weight``, ...). ``ff_proj`` is the gate
and ``up_proj`` the linear branch of the SwiGLU.
"""

from __future__ import annotations

import re
from typing import Any

from sparsed.config_errors import ConfigError
from sparsed.models.registry import Family
from sparsed.models.transformer import ModelArgs

MODEL_TYPES = ("llada",)

_BLOCK = {
    "attn_norm.weight": "attn_norm.weight",
    "q_proj.weight": "wq.weight",
    "k_proj.weight": "wk.weight",
    "v_proj.weight": "wv.weight",
    "q_proj.bias": "wq.bias",
    "k_proj.bias": "wk.bias",
    "v_proj.bias": "wv.bias",
    "attn_out.weight": "wo.weight",
    "ff_norm.weight": "ffn_norm.weight",
    "ff_proj.weight": "w_gate.weight",
    "up_proj.weight": "w_up.weight",
    "ff_out.weight": "w_down.weight",
}
_TOP = {
    "model.transformer.wte.weight": "embed.weight",
    "model.transformer.ln_f.weight": "norm.weight",
    "model.transformer.ff_out.weight": "head.weight",
}
_BLOCK_RE = re.compile(r"model\.transformer\.blocks\.(\d+)\.(.+)")


def args_from_config(cfg: dict[str, Any]) -> ModelArgs:
    unsupported = {
        "block_type": ("llama",), "layer_norm_type": ("rms",), "activation_type": ("silu",),
        "alibi": (False,), "weight_tying": (False,), "scale_logits": (False,), "rope": (True,),
    }
    for key, ok in unsupported.items():
        if key in cfg and cfg[key] not in ok:
            raise ConfigError(f"LLaDA config {key}={cfg[key]!r} is not supported (supported: {ok})")
    n_heads = cfg["n_heads"]
    return ModelArgs(
        arch="llada",
        vocab_size=cfg.get("embedding_size") or cfg["vocab_size"],
        dim=cfg["d_model"],
        n_layers=cfg["n_layers"],
        n_heads=n_heads,
        n_kv_heads=cfg.get("n_kv_heads") or n_heads,
        ffn_dim=cfg["mlp_hidden_size"],
        norm_eps=cfg.get("rms_norm_eps", 1e-5),
        rope_theta=cfg.get("rope_theta", 10000.0),
        qkv_bias=bool(cfg.get("include_qkv_bias") or cfg.get("include_bias")),
        mask_token_id=cfg.get("mask_token_id", 126336),
        eos_token_id=cfg.get("eos_token_id"),
        pad_token_id=cfg.get("pad_token_id"),
        shift_logits=False,
        rope_in_fp32=bool(cfg.get("rope_full_precision", True)),
        max_length=cfg.get("max_sequence_length"),
    )


def config_from_args(a: ModelArgs) -> dict[str, Any]:
    """A LLaDA ``config.json`` for ``a`` (used when the project saves its own checkpoints)."""
    return {
        "architectures": ["LLaDAModelLM"], "model_type": "llada", "block_type": "llama",
        "d_model": a.dim, "n_heads": a.n_heads, "n_kv_heads": a.n_kv_heads, "n_layers": a.n_layers,
        "mlp_hidden_size": a.ffn_dim, "mlp_ratio": a.ffn_dim // a.dim, "vocab_size": a.vocab_size,
        "embedding_size": a.vocab_size, "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_theta,
        "rope": True, "rope_full_precision": a.rope_in_fp32, "include_bias": False,
        "include_qkv_bias": a.qkv_bias, "layer_norm_type": "rms", "activation_type": "silu",
        "weight_tying": False, "alibi": False, "scale_logits": False,
        "mask_token_id": a.mask_token_id, "eos_token_id": a.eos_token_id, "pad_token_id": a.pad_token_id,
        "max_sequence_length": a.max_length,
    }


def map_name(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    m = _BLOCK_RE.fullmatch(name)
    if m and m.group(2) in _BLOCK:
        return f"layers.{m.group(1)}.{_BLOCK[m.group(2)]}"
    return None


def checkpoint_name(internal: str) -> str:
    for k, v in _TOP.items():
        if v == internal:
            return k
    layer, rest = internal.split(".", 2)[1:]
    inverse = {v: k for k, v in _BLOCK.items()}
    return f"model.transformer.blocks.{layer}.{inverse[rest]}"


FAMILY = Family("llada", MODEL_TYPES, args_from_config, map_name, sampler="sparsed.sampling.llada:sample",
                gen_checker="sparsed.sampling.llada:check_gen", config_from_args=config_from_args,
                checkpoint_name=checkpoint_name)
