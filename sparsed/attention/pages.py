"""Quest's page selection over cached keys (Tang et al., ICML 2024), as the cached methods use it.

The cached keys are cut into pages of ``page`` consecutive canvas rows inside each cached key range.
Per page and K/V head, the channel-wise min and max of its keys bound every q·k in the page from
above: q·k <= sum_d max(q_d * max_d, q_d * min_d). A query keeps the pages with the largest bounds up
to a token budget; a kernel that serves several queries at once loads the union of their pages (per
K/V head), which is what "KV density" counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Pages:
    """Page metadata of one layer's cached keys (fixed for a block)."""

    start: torch.Tensor  # [nP] first canvas row of each page
    length: torch.Tensor  # [nP] rows in each page (the last page of a range can be short)
    kmin: torch.Tensor  # [B, Hkv, nP, D] channel-wise min over the page's real keys
    kmax: torch.Tensor  # [B, Hkv, nP, D]
    valid: torch.Tensor  # [B, nP] pages holding at least one real (non-padding) key
    total_keys: torch.Tensor  # [B] real cached keys per batch row

    @property
    def n_pages(self) -> int:
        return int(self.start.shape[0])


def build_pages(k: torch.Tensor, ranges: tuple[tuple[int, int], ...], page: int,
                key_valid: torch.Tensor | None) -> Pages:
    """Pages of ``k`` [B, Hkv, Lk, D] over the canvas ``ranges`` (padding rows excluded from the bounds)."""
    starts, lengths = [], []
    for a, b in ranges:
        for s in range(a, b, page):
            starts.append(s)
            lengths.append(min(page, b - s))
    dev = k.device
    start = torch.tensor(starts, dtype=torch.long, device=dev)
    length = torch.tensor(lengths, dtype=torch.long, device=dev)
    B, H, _, D = k.shape
    idx, inside = page_rows(start, length, page)  # [nP, page]
    real = inside[None].expand(B, -1, -1).clone()
    if key_valid is not None:
        real &= key_valid[:, idx.clamp(max=key_valid.shape[1] - 1)]
    if key_valid is None and all((b - a) % page == 0 for a, b in ranges):
        # whole pages only and no padding: views of the cache, no gathered copy of the keys
        parts = [k[:, :, a:b].reshape(B, H, (b - a) // page, page, D) for a, b in ranges if b > a]
        kmin = torch.cat([p.amin(3) for p in parts], dim=2)
        kmax = torch.cat([p.amax(3) for p in parts], dim=2)
    else:
        kp = k[:, :, idx.clamp(max=k.shape[2] - 1)]  # [B, H, nP, page, D]
        m = real[:, None, :, :, None]
        kmin = kp.masked_fill(~m, torch.inf).amin(3)
        kmax = kp.masked_fill(~m, -torch.inf).amax(3)
    valid = real.any(-1)
    return Pages(start, length, kmin, kmax, valid, real.sum((1, 2)))


def page_rows(start: torch.Tensor, length: torch.Tensor, page: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvas rows of every page [nP, page] and which of them belong to it (short pages)."""
    off = torch.arange(page, device=start.device)
    return start[:, None] + off[None], off[None] < length[:, None]


def upper_bounds(q: torch.Tensor, pages: Pages) -> torch.Tensor:
    """Quest's bound of q·k per query and page: [B, Hq, Lq, nP] (invalid pages -inf).

    sum_d max(q_d max_d, q_d min_d) = q+ · max + q- · min (q+ = max(q, 0), q- = min(q, 0)): two matrix
    products, never the [.., nP, D] products themselves.
    """
    B, Hq, Lq, D = q.shape
    Hkv = pages.kmin.shape[1]
    n_rep = Hq // Hkv
    qg = q.reshape(B, Hkv, n_rep * Lq, D).float()
    bound = torch.matmul(qg.clamp(min=0), pages.kmax.float().transpose(-1, -2))
    bound = bound + torch.matmul(qg.clamp(max=0), pages.kmin.float().transpose(-1, -2))
    bound = bound.reshape(B, Hq, Lq, -1)
    return bound.masked_fill(~pages.valid[:, None, None, :], -torch.inf)


def select_pages(bounds: torch.Tensor, budget: int, page: int) -> torch.Tensor:
    """bool [B, Hq, Lq, nP]: each query's top pages, ceil(budget / page) of them (all when fewer)."""
    n = bounds.shape[-1]
    keep = min(n, max(1, math.ceil(budget / page)))
    out = torch.zeros_like(bounds, dtype=torch.bool)
    out.scatter_(-1, bounds.topk(keep, dim=-1).indices, True)
    return out & torch.isfinite(bounds)


def union_per_kv_head(selected: torch.Tensor, rows: torch.Tensor | None, n_kv: int) -> torch.Tensor:
    """bool [B, Hkv, nP]: pages any selected query (``rows`` [B, Lq] of them, all when None) of a K/V head's
    group wants; this is what one kernel launch for those queries loads."""
    B, Hq, Lq, nP = selected.shape
    sel = selected if rows is None else selected & rows[:, None, :, None]
    return sel.reshape(B, n_kv, Hq // n_kv, Lq, nP).any(2).any(2)


def gather_pages(k: torch.Tensor, v: torch.Tensor, pages: Pages, chosen: torch.Tensor,
                 key_valid: torch.Tensor | None, page: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The keys/values of the chosen pages per K/V head, packed: (k, v [B, Hkv, n*page, D], ok [B, Hkv, n*page],
    page_of [B, Hkv, n*page] index of the page each packed key came from; padded entries have ok=False)."""
    B, H, nP = chosen.shape
    count = chosen.sum(-1)
    n = max(1, int(count.max()))
    order = torch.argsort((~chosen).to(torch.int8), dim=-1, stable=True)[..., :n]  # chosen pages first
    used = torch.arange(n, device=k.device)[None, None] < count[..., None]
    idx, inside = page_rows(pages.start, pages.length, page)  # [nP, page]
    rows = idx[order]  # [B, H, n, page]
    ok = inside[order] & used[..., None]
    if key_valid is not None:
        ok &= _valid_at(key_valid, rows)
    flat = rows.reshape(B, H, n * page).clamp(max=k.shape[2] - 1)
    D = k.shape[-1]
    kg = k.gather(2, flat[..., None].expand(-1, -1, -1, D))
    vg = v.gather(2, flat[..., None].expand(-1, -1, -1, v.shape[-1]))
    page_of = order[..., None].expand(-1, -1, -1, page).reshape(B, H, n * page)
    return kg, vg, ok.reshape(B, H, n * page), page_of


def _valid_at(key_valid: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    B = rows.shape[0]
    flat = rows.reshape(B, -1).clamp(max=key_valid.shape[1] - 1)
    return key_valid.gather(1, flat).reshape(rows.shape)
