"""A bidirectional (masked-diffusion) transformer that covers LLaDA and Dream.

Both are Llama-like: RMSNorm, rotate-half RoPE, SwiGLU MLP, untied LM head, no causal mask. They differ
in a handful of facts (q/k/v bias, GQA, epsilon, theta, whether RoPE is applied in float32, whether the
logit at position i predicts token i or i+1), which ``ModelArgs`` carries. Each architecture's own file
(``llada.py``, ``dream.py``) turns its Hugging Face ``config.json`` into ``ModelArgs`` and maps its
checkpoint parameter names onto this module's.

Attention goes through one callable: ``AttentionMethod.forward(layer, q, k, v, key_valid)``. The model
never knows which method that is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsed.attention.base import AttentionMethod
from sparsed.attention.kernels import dense_attention


@dataclass
class ModelArgs:
    arch: str
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    norm_eps: float
    rope_theta: float
    qkv_bias: bool
    mask_token_id: int
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    shift_logits: bool = False  # Dream: the logit at i-1 predicts token i
    rope_in_fp32: bool = True  # LLaDA rotates q/k in float32; Qwen2/Dream in the model dtype
    max_length: int | None = None  # the training context, when the config states one

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, 1, L, head_dim] in float32 for integer positions [B, L]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat([freqs, freqs], dim=-1)[:, None]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, in_fp32: bool) -> torch.Tensor:
    dtype = x.dtype
    if in_fp32:
        x = x.float()
    else:
        cos, sin = cos.to(dtype), sin.to(dtype)
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return (x * cos + rotated * sin).to(dtype)


class Block(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.a = a
        hd = a.head_dim
        self.attn_norm = RMSNorm(a.dim, a.norm_eps)
        self.wq = nn.Linear(a.dim, a.n_heads * hd, bias=a.qkv_bias)
        self.wk = nn.Linear(a.dim, a.n_kv_heads * hd, bias=a.qkv_bias)
        self.wv = nn.Linear(a.dim, a.n_kv_heads * hd, bias=a.qkv_bias)
        self.wo = nn.Linear(a.n_heads * hd, a.dim, bias=False)
        self.ffn_norm = RMSNorm(a.dim, a.norm_eps)
        self.w_gate = nn.Linear(a.dim, a.ffn_dim, bias=False)
        self.w_up = nn.Linear(a.dim, a.ffn_dim, bias=False)
        self.w_down = nn.Linear(a.ffn_dim, a.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        layer: int,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attention: AttentionMethod | None,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        a = self.a
        B, L, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, L, a.n_heads, a.head_dim).transpose(1, 2)
        k = self.wk(h).view(B, L, a.n_kv_heads, a.head_dim).transpose(1, 2)
        v = self.wv(h).view(B, L, a.n_kv_heads, a.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, a.rope_in_fp32)
        k = apply_rope(k, cos, sin, a.rope_in_fp32)
        if attention is None:
            o = dense_attention(q, k, v, key_valid)
        else:
            o = attention.forward(layer, q, k, v, key_valid)
        x = x + self.wo(o.transpose(1, 2).reshape(B, L, -1))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class DiffusionLM(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.embed = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.head = nn.Linear(args.dim, args.vocab_size, bias=False)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        attention: AttentionMethod | None = None,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [B, L, dim]. ``attention_mask``: bool/int [B, L], 1 = real token."""
        key_valid = None
        if attention_mask is not None:
            key_valid = attention_mask.bool()
            if bool(key_valid.all()):
                key_valid = None
            elif positions is None:
                positions = (key_valid.long().cumsum(-1) - 1).clamp(min=0)
        if positions is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(input_ids.shape[0], -1)
        cos, sin = rope_tables(positions, self.args.head_dim, self.args.rope_theta)
        x = self.embed(input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, i, cos, sin, attention, key_valid)
        return self.norm(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention: AttentionMethod | None = None,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Raw logits [B, L, V] at every position (unshifted, as the checkpoints define them)."""
        return self.head(self.hidden_states(input_ids, attention, attention_mask, positions))

    def token_logits(
        self,
        input_ids: torch.Tensor,
        at: torch.Tensor | slice | None = None,
        attention: AttentionMethod | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits that predict the tokens at positions ``at`` (all positions when None).

        Only those rows go through the LM head: at 64k tokens the full-canvas logits of LLaDA would be
        ~17 GB. For shift-logit models (Dream) the prediction of token i comes from position i-1 (and
        token 0 from position 0).
        """
        h = self.hidden_states(input_ids, attention, attention_mask)
        if self.args.shift_logits:
            h = torch.cat([h[:, :1], h[:, :-1]], dim=1)
        if at is not None:
            h = h[:, at]
        return self.head(h)

    def init_random(self, seed: int = 0, std: float = 0.02) -> DiffusionLM:
        """N(0, std) weights, unit norms, zero biases; drawn on the parameters' own device (fast for 8B)."""
        g = torch.Generator(device=self.device).manual_seed(seed)
        for name, p in sorted(self.named_parameters()):
            with torch.no_grad():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, std, generator=g)
        return self
