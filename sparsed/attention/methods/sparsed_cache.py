"""SparseD on a block-wise KV cache: the SparseD paper's future work (no paper has it).

SparseD's two observations carried over to a cache: attention patterns are head-specific, and similar
across denoising steps. Per block and layer, the block's first, dense step fixes a head-specific block
pattern of the recomputed rows' attention to the cached (static) keys: for every query block of
``sparsed_cache.block_size`` rows, the key blocks with the largest attention mass (block-averaged
softmax, as SparseD's Eq. 6), chosen separately among prompt blocks and among finished-generation blocks
(SparseD's isolated selection; ``isolated=false`` picks jointly). The block's later steps attend to the
cached keys through that pattern only, and to the recomputed (in-block) keys densely; the parts are
merged by log-sum-exp. How many key blocks: the fraction ``select`` of each region, or, when ``budget``
is set, ``budget`` tokens per query in all (to compare with LoSA and Quest at the same budget; split
between the regions in proportion to their sizes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsed.attention.base import MethodSettings
from sparsed.attention.cached import StaticSplitMethod
from sparsed.attention.lse import attention_lse
from sparsed.attention.registry import MethodSpec
from sparsed.attention.selection import keep_count
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts


@dataclass
class SparseDCacheSettings(MethodSettings):
    select: float = 0.3  # fraction of each region's cached key blocks kept per query block
    block_size: int = 64  # query and key block size in tokens
    budget: int | None = None  # cached-key tokens per query instead of select (compare with LoSA/Quest)
    isolated: bool = True  # prompt and finished-generation key blocks selected apart

    def validate(self) -> None:
        if not 0.0 < self.select <= 1.0:
            raise ConfigError(f"sparsed_cache.select={self.select} is outside (0, 1]")
        bs = self.block_size
        if not isinstance(bs, int) or bs <= 0 or bs & (bs - 1):
            raise ConfigError(f"sparsed_cache.block_size={bs} is not a positive power of two (e.g. 32, 64, 128)")
        if self.budget is not None and (not isinstance(self.budget, int) or self.budget < 1):
            raise ConfigError(f"sparsed_cache.budget={self.budget!r} must be a positive number of tokens or null")


@dataclass
class KeyBlocks:
    start: torch.Tensor  # [nK] first canvas row of each cached key block
    length: torch.Tensor  # [nK]
    prompt: torch.Tensor  # [nK] bool: the block starts inside the prompt


def key_blocks(static: tuple[tuple[int, int], ...], bs: int, prompt_length: int, device: torch.device) -> KeyBlocks:
    starts, lengths = [], []
    for a, b in static:
        for s in range(a, b, bs):
            starts.append(s)
            lengths.append(min(bs, b - s))
    start = torch.tensor(starts, dtype=torch.long, device=device)
    return KeyBlocks(start, torch.tensor(lengths, dtype=torch.long, device=device), start < prompt_length)


def block_importance(q: torch.Tensor, k: torch.Tensor, key_valid: torch.Tensor | None, blocks: KeyBlocks,
                     bs: int) -> torch.Tensor:
    """Mean softmax mass (over the cached keys) of each (query block, cached key block): [B, Hq, nQ, nK].

    One query block's scores exist at a time; padding keys are outside the softmax.
    """
    idx = torch.cat([torch.arange(int(s), int(s + n), device=k.device) for s, n in zip(blocks.start, blocks.length,
                                                                                        strict=True)])
    bid = torch.repeat_interleave(torch.arange(len(blocks.start), device=k.device), blocks.length)
    ks = k[:, :, idx]
    valid = None if key_valid is None else key_valid[:, idx]
    B, Hq, Lq, D = q.shape
    Hkv = k.shape[1]
    n_rep = Hq // Hkv
    scale = 1.0 / math.sqrt(D)
    nq = math.ceil(Lq / bs)
    out = torch.zeros(B, Hq, nq, len(blocks.start), dtype=torch.float32, device=q.device)
    for j in range(nq):
        qb = q[:, :, j * bs : (j + 1) * bs]
        r = qb.shape[2]
        s = torch.matmul(qb.reshape(B, Hkv, n_rep * r, D), ks.transpose(-1, -2)).float() * scale
        if valid is not None:
            s = s.masked_fill(~valid[:, None, None, :], -torch.inf)
        p = torch.softmax(s, dim=-1).reshape(B, Hq, r, -1).sum(2)  # [B, Hq, S]
        out[:, :, j].index_add_(2, bid, p)
        out[:, :, j] /= r
    return out / blocks.length[None, None, None, :].float()


def select_key_blocks(imp: torch.Tensor, blocks: KeyBlocks, s: SparseDCacheSettings) -> torch.Tensor:
    """bool [B, Hq, nQ, nK] of the kept cached key blocks."""
    nK = imp.shape[-1]
    regions = [blocks.prompt, ~blocks.prompt] if s.isolated else [torch.ones_like(blocks.prompt)]
    total = None if s.budget is None else max(1, math.ceil(s.budget / s.block_size))
    out = torch.zeros_like(imp, dtype=torch.bool)
    for region in regions:
        n = int(region.sum())
        if n == 0:
            continue
        k = keep_count(n, s.select, "paper") if total is None else max(1, min(n, round(total * n / nK)))
        scores = imp.masked_fill(~region, -torch.inf)
        out.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return out


class SparseDCache(StaticSplitMethod):
    name = "sparsed_cache"

    def __init__(self, settings: SparseDCacheSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings
        self.patterns: dict[int, tuple[int, KeyBlocks, torch.Tensor]] = {}

    def reset_blocks(self) -> None:
        self.patterns = {}

    def on_block_start(self, layer, q, k, v, key_valid, where, static, out, lse):  # noqa: ANN001, ANN201
        info = self.info
        prompt = info.prompt_length if info is not None else 0
        blocks = key_blocks(static, self.s.block_size, prompt, k.device)
        if not len(blocks.start):  # nothing cached yet (an empty prompt's first block): nothing to select
            return
        imp = block_importance(q, k, key_valid, blocks, self.s.block_size)
        self.patterns[layer] = (where.block, blocks, select_key_blocks(imp, blocks, self.s))

    def static_attention(self, layer, q, k, v, key_valid, where, static):  # noqa: ANN001, ANN201 - see base
        block, blocks, grid = self.patterns[layer]
        if block != where.block:
            raise RuntimeError("SparseD on the cache: a cached step without its block's dense first step")
        out, lse, union = gathered_block_attention(q, k, v, key_valid, blocks, grid, self.s.block_size)
        loaded = (union.float() * blocks.length[None, None].float()).sum(-1)
        return out, lse, loaded


def gathered_block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor | None,
                             blocks: KeyBlocks, grid: torch.Tensor, bs: int,
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of ``q`` [B, Hq, Lq, D] to the cached key blocks ``grid`` [B, Hq, nQ, nK] keeps: (out, LSE,
    the union [B, Hkv, nK] of the blocks each K/V head serves).

    Only the union's blocks are gathered (per K/V head, padded to the longest union), so the work and the
    mask scale with the kept keys, not with the whole cache; each query block then masks the union down to
    its own blocks. Same function as masking every cached key (``tests/test_cached_methods.py``)."""
    B, Hq, Lq, D = q.shape
    Hkv = k.shape[1]
    n_rep = Hq // Hkv
    dev = k.device
    union = grid.reshape(B, Hkv, n_rep, *grid.shape[2:]).any(2).any(2)  # [B, Hkv, nK]
    m = max(1, int(union.sum(-1).max()))
    # the union's block ids first (stable order), then padding blocks that the mask drops
    order = torch.sort((~union).to(torch.int8), dim=-1, stable=True).indices[..., :m]  # [B, Hkv, M]
    kept = torch.gather(union, -1, order)
    off = torch.arange(bs, device=dev)
    tok = blocks.start[order][..., None] + off  # [B, Hkv, M, bs] canvas rows
    tok_ok = kept[..., None] & (off < blocks.length[order][..., None])
    if key_valid is not None:
        tok_ok = tok_ok & torch.gather(key_valid[:, None].expand(B, Hkv, -1), 2,
                                       tok.clamp(max=key_valid.shape[1] - 1).reshape(B, Hkv, -1)).reshape(tok.shape)
    tok = torch.where(tok_ok, tok, torch.zeros_like(tok)).reshape(B, Hkv, m * bs)
    kg = torch.gather(k, 2, tok[..., None].expand(-1, -1, -1, k.shape[-1]))
    vg = torch.gather(v, 2, tok[..., None].expand(-1, -1, -1, v.shape[-1]))
    # per query head and query block: which of its K/V head's gathered blocks it keeps
    qb = torch.arange(Lq, device=dev) // bs
    order_q = order.repeat_interleave(n_rep, dim=1)  # [B, Hq, M]
    keep = torch.gather(grid, -1, order_q[:, :, None].expand(-1, -1, grid.shape[2], -1))  # [B, Hq, nQ, M]
    mask = keep[:, :, qb, :, None] & tok_ok.repeat_interleave(n_rep, dim=1)[:, :, None]  # [B, Hq, Lq, M, bs]
    out, lse = attention_lse(q, kg, vg, mask.reshape(B, Hq, Lq, m * bs))
    return out, lse, union


METHOD = MethodSpec("sparsed_cache", SparseDCacheSettings, SparseDCache,
                    "SparseD on a KV cache: a head-specific block pattern of the cached keys per block")
