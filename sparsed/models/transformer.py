"""A diffusion-LM transformer that covers LLaDA, Dream and SDAR/TraDo.

All are Llama-like: RMSNorm, rotate-half RoPE, SwiGLU MLP, untied LM head. They differ in a handful of
facts (q/k/v bias, GQA, epsilon, theta, whether RoPE is applied in float32, whether the logit at
position i predicts token i or i+1, Qwen3's q/k norm and separate head_dim, block-causal attention),
which ``ModelArgs`` carries. Each architecture's own file (``llada.py``, ``dream.py``, ``sdar.py``)
turns its Hugging Face ``config.json`` into ``ModelArgs`` and maps its checkpoint parameter names onto
this module's.

Attention goes through one callable: ``AttentionMethod.forward(layer, q, k, v, key_valid, layout)``.
The model never knows which method that is.

A forward can compute a subset of the canvas rows (``rows``) against a ``KVCache`` that holds the
keys/values of the others (see ``kv_cache``); without ``rows`` and ``cache`` it is the plain
full-canvas forward, unchanged. ``block`` makes attention block-causal (block diffusion: a query sees
the keys of its own and earlier blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsed.attention.base import AttentionMethod, Layout
from sparsed.attention.dense_kernels import dense_attention
from sparsed.facts import ModelFacts
from sparsed.models.kv_cache import KVCache, Rows, gather_rows, rows_positions


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
    head_dim_override: int | None = None  # Qwen3-style configs state head_dim apart from dim / n_heads
    qk_norm: bool = False  # RMSNorm over head_dim on q and k before RoPE (Qwen3 / SDAR)
    block_causal: bool = False  # block diffusion (SDAR): causal across blocks, bidirectional inside
    # RMSNorm multiplies by its weight in float32 and rounds once (flash-attn's fused RMSNorm, which SDAR's
    # code calls); otherwise it rounds the normalised input to the model dtype first (HF Llama/Qwen)
    norm_weight_fp32: bool = False

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.dim // self.n_heads

    @property
    def facts(self) -> ModelFacts:
        return ModelFacts(arch=self.arch, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads, head_dim=self.head_dim,
                          n_layers=self.n_layers, logit_shift=1 if self.shift_logits else 0,
                          block_causal=self.block_causal)


@dataclass
class _CallPlan:
    """What every layer of one forward shares: the rows computed, the cache, the key range, the layout."""

    rows: Rows
    cache: KVCache | None
    key_len: int
    layout: Layout | None


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, weight_fp32: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight_fp32 = weight_fp32
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.weight_fp32:
            return (self.weight.float() * xf).to(x.dtype)
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
        fp32 = a.norm_weight_fp32
        self.attn_norm = RMSNorm(a.dim, a.norm_eps, fp32)
        if a.qk_norm:
            self.q_norm = RMSNorm(hd, a.norm_eps, fp32)
            self.k_norm = RMSNorm(hd, a.norm_eps, fp32)
        self.wq = nn.Linear(a.dim, a.n_heads * hd, bias=a.qkv_bias)
        self.wk = nn.Linear(a.dim, a.n_kv_heads * hd, bias=a.qkv_bias)
        self.wv = nn.Linear(a.dim, a.n_kv_heads * hd, bias=a.qkv_bias)
        self.wo = nn.Linear(a.n_heads * hd, a.dim, bias=False)
        self.ffn_norm = RMSNorm(a.dim, a.norm_eps, fp32)
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
        step: _CallPlan | None = None,
    ) -> torch.Tensor:
        a = self.a
        B, L, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(B, L, a.n_heads, a.head_dim)
        k = self.wk(h).view(B, L, a.n_kv_heads, a.head_dim)
        if a.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = self.wv(h).view(B, L, a.n_kv_heads, a.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, a.rope_in_fp32)
        k = apply_rope(k, cos, sin, a.rope_in_fp32)
        layout = None
        if step is not None:
            if step.cache is not None:
                k, v = step.cache.update(layer, step.rows, k, v, step.key_len)
            layout = step.layout
        if attention is None:
            if layout is None:
                o = dense_attention(q, k, v, key_valid)
            else:
                o = dense_attention(q, k, v, layout.key_mask(key_valid) if layout.block else key_valid)
        else:
            o = attention.forward(layer, q, k, v, key_valid, layout)
        x = x + self.wo(o.transpose(1, 2).reshape(B, L, -1))
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class DiffusionLM(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.embed = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps, args.norm_weight_fp32)
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
        *,
        rows: Rows = None,
        cache: KVCache | None = None,
        key_len: int | None = None,
        block: int | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states of the canvas rows ``rows`` [B, n, dim] (all rows by default).

        ``input_ids`` is always the whole canvas [B, L]; ``attention_mask`` (bool/int [B, L], 1 = real
        token) sets padding and RoPE positions; a bool [B or 1, 1, L, L] is a full mask (True = may
        attend) for training objectives, with ``positions`` given. With ``rows`` the other rows' keys/values come from
        ``cache`` (filled by an earlier forward); keys cover canvas rows [0, key_len) (all by default).
        ``block`` makes the attention block-causal with that block size.
        """
        B, L = input_ids.shape
        key_valid = None
        if attention_mask is not None and attention_mask.dim() == 4:
            # a training objective's own mask over its own sequence layout (SDAR's [noisy; clean] copy)
            if positions is None or rows is not None or cache is not None or block is not None:
                raise ValueError("a full attention mask [B, 1, L, L] needs explicit positions and no rows/cache/block")
            attention_mask = attention_mask.bool()
        if attention_mask is not None:
            key_valid = attention_mask.bool()
            if bool(key_valid.all()):
                key_valid = None
            elif positions is None:
                positions = (key_valid.long().cumsum(-1) - 1).clamp(min=0)
        if positions is None:
            positions = torch.arange(L, device=input_ids.device)[None].expand(B, -1)
        plan = None
        if rows is not None or cache is not None or block is not None:
            if rows is not None and cache is None:
                raise ValueError("a forward over some rows needs the KV cache that holds the others")
            key_len = L if key_len is None else key_len
            if rows is None and key_len < L:
                rows = (0, key_len)
            layout = None
            if rows is not None or block is not None:
                span = (0, key_len) if rows is None else rows if isinstance(rows, tuple) else None
                layout = Layout(rows_positions(rows, B, key_len, input_ids.device), key_len, span, block)
            plan = _CallPlan(rows, cache, key_len, layout)
            if key_valid is not None:
                key_valid = key_valid[:, :key_len]
            positions = gather_rows(positions, rows)
            input_ids = gather_rows(input_ids, rows)
        cos, sin = rope_tables(positions, self.args.head_dim, self.args.rope_theta)
        x = self.embed(input_ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, i, cos, sin, attention, key_valid, plan)
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
