"""SparseD's head-specific block selection (the pattern), one query block at a time.

``select_blocks`` returns a bool grid [B, Hq, nB, nB]: for every head and query block, the key blocks
that later steps attend to. Two rule sets:

* ``reference`` reproduces the released SparseD code: importance is the mean of the softmax over a
  zero-padded ``bs x bs`` tile (divided by bs^2 even for a partial block), pass 1 keeps the top
  ``int(nB*select)+1`` blocks among *all* key blocks and then drops the generation ones, pass 2
  re-normalises the softmax over generation keys and keeps ``int(n_gen*select)+1`` of them; the block
  straddling the prompt/generation boundary counts as prompt.
* ``paper`` follows Eq. 6: one softmax over all keys, block averages over the real entries, and the top
  ``ceil(select * n)`` blocks among prompt blocks and, separately, among generation blocks (a block that
  straddles the boundary is a candidate in both).

Only one query block's scores ([B, Hq, bs, L]) exist at any time (none at all in the fused kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sparsed.attention.estimator_cpu import block_mass_flash_cpu, flash_mass_supported

COMPAT_MODES = ("reference", "paper")


@dataclass
class SelectionRule:
    block_size: int
    select: float
    compat: str = "reference"
    isolated: bool = True
    scale: float | None = None  # softmax scale of the importance scores; None = 1/sqrt(head_dim)


def keep_count(n_blocks: int, select: float, compat: str) -> int:
    if n_blocks <= 0:
        return 0
    k = int(n_blocks * select) + 1 if compat == "reference" else math.ceil(n_blocks * select - 1e-9)
    return min(n_blocks, max(1, k))


def _block_sums(p: torch.Tensor, block_size: int, n_blocks: int) -> torch.Tensor:
    """p [..., rows, keys] -> sums over rows and over each key block: [..., n_blocks]."""
    col = p.sum(dim=-2)
    pad = n_blocks * block_size - col.shape[-1]
    if pad:
        col = torch.nn.functional.pad(col, (0, pad))
    return col.reshape(*col.shape[:-1], n_blocks, block_size).sum(-1)


def _topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        out.scatter_(-1, scores.topk(k, dim=-1).indices, True)
    return out


def _row_probs(q_blk: torch.Tensor, k: torch.Tensor, scale: float, n_rep: int) -> torch.Tensor:
    """Softmax over keys in float32 for one query block: [B, Hq, rows, L_keys]."""
    B, Hq, R, D = q_blk.shape
    Hkv = k.shape[1]
    qg = q_blk.reshape(B, Hkv, n_rep * R, D)  # GQA without materialising repeated keys
    s = torch.matmul(qg, k.transpose(-1, -2))
    # scale in place when the product is already a fresh fp32 tensor (no extra score-sized allocation)
    s = s.mul_(scale) if s.dtype == torch.float32 else s.float() * scale
    return torch.softmax(s, dim=-1).reshape(B, Hq, R, -1)


def block_mass_torch(q: torch.Tensor, k: torch.Tensor, scale: float, block_size: int,
                     pool_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sum of softmax(q k^T * scale) over every (query block, key block) tile: [B, Hq, nq, nk].

    One query block's scores exist at a time. ``pool_dtype`` rounds the probabilities to that dtype
    before pooling (the released code pools in the model's dtype).
    """
    L, Lk = q.shape[2], k.shape[2]
    nq, nk = math.ceil(L / block_size), math.ceil(Lk / block_size)
    n_rep = q.shape[1] // k.shape[1]
    out = []
    for i in range(nq):
        p = _row_probs(q[:, :, i * block_size : (i + 1) * block_size], k, scale, n_rep)
        if pool_dtype is not None:
            p = p.to(pool_dtype).float()
        out.append(_block_sums(p, block_size, nk))
    return torch.stack(out, dim=2)


def block_mass(q: torch.Tensor, k: torch.Tensor, scale: float, block_size: int,
               pool_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fused kernels where they exist: Triton on CUDA, PyTorch's flash kernel for fp32 on the CPU.

    Neither keeps a score matrix in memory; elsewhere (other dtypes, no kernel) the explicit softmax runs.
    """
    if q.is_cuda:
        from sparsed.attention.estimator_triton import block_mass_triton, triton_available

        if triton_available() and q.shape[-1] in (32, 64, 128, 256) and block_size >= 16:
            return block_mass_triton(q, k, scale, block_size, round_bf16=pool_dtype == torch.bfloat16)
    elif flash_mass_supported(q, k, pool_dtype):
        return block_mass_flash_cpu(q, k, scale, block_size)
    return block_mass_torch(q, k, scale, block_size, pool_dtype)


def select_blocks_row(
    q: torch.Tensor,
    k: torch.Tensor,
    prompt_len: int,
    rule: SelectionRule,
    debug: dict | None = None,
) -> torch.Tensor:
    """Selection for one batch row (q [1, Hq, L, D], k [1, Hkv, L, D], all tokens real)."""
    _, Hq, L, D = q.shape
    bs = rule.block_size
    nb = math.ceil(L / bs)
    scale = rule.scale if rule.scale is not None else 1.0 / math.sqrt(D)
    ref = rule.compat == "reference"
    # `last`: first key block of the generation region (the reference counts a straddling block as prompt)
    last = min(math.ceil(prompt_len / bs), nb - 1) if ref else min(prompt_len // bs, nb - 1)
    n_prompt_blocks = last if ref else math.ceil(prompt_len / bs)
    n_gen = nb - last
    k_all = keep_count(nb, rule.select, rule.compat)
    k_pre = keep_count(n_prompt_blocks, rule.select, rule.compat)
    k_gen = keep_count(n_gen, rule.select, rule.compat)
    pool = q.dtype if ref and q.dtype != torch.float32 else None
    mass = block_mass(q, k, scale, bs, pool)
    if ref:
        imp = mass / (bs * bs)  # zero-padded tiles: a partial block is still divided by bs^2
    else:
        sizes = torch.full((nb,), float(bs), device=q.device)
        sizes[-1] = L - (nb - 1) * bs
        imp = mass / (sizes[:, None] * sizes[None, :])
    if debug is not None:
        debug["importance_all"] = imp
        debug["last"] = last
    if not rule.isolated:
        return _topk_mask(imp, k_all)
    if ref:
        grid = _topk_mask(imp, k_all)
        grid[..., last:] = False
        imp_g = block_mass(q, k[:, :, last * bs :], scale, bs, pool) / (bs * bs)
        if debug is not None:
            debug["importance_gen"] = imp_g
        grid[..., last:] |= _topk_mask(imp_g, k_gen)
        return grid
    grid = torch.zeros_like(imp, dtype=torch.bool)
    if n_prompt_blocks:
        grid[..., :n_prompt_blocks] = _topk_mask(imp[..., :n_prompt_blocks], k_pre)
    grid[..., last:] |= _topk_mask(imp[..., last:], k_gen)
    return grid


def select_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    prompt_len: int,
    rule: SelectionRule,
    valid_len: torch.Tensor | None = None,
    debug: dict | None = None,
) -> torch.Tensor:
    """Block grid [B, Hq, nB, nB] for a batch whose rows are real tokens followed by padding.

    ``prompt_len`` counts the prompt tokens of an unpadded row; row b has ``L - valid_len[b]`` padding
    tokens, all of them prompt padding, so its own prompt is ``prompt_len - (L - valid_len[b])``.
    """
    B, Hq, L, _ = q.shape
    bs = rule.block_size
    nb = math.ceil(L / bs)
    if valid_len is None:
        if B == 1:
            return select_blocks_row(q, k, prompt_len, rule, debug)
        valid_len = torch.full((B,), L, dtype=torch.long)
    rows = []
    for b in range(B):
        n = int(valid_len[b])
        g = select_blocks_row(q[b : b + 1, :, :n], k[b : b + 1, :, :n], prompt_len - (L - n), rule)
        full = torch.zeros(1, Hq, nb, nb, dtype=torch.bool, device=q.device)
        nbr = g.shape[-1]
        full[..., :nbr, :nbr] = g
        full[..., nbr:, 0] = True  # padding-only query blocks: keep one real key block (no empty rows)
        rows.append(full)
    return torch.cat(rows, dim=0)
