"""Shared machinery of the methods that sparsify the cached part of a block's attention (Quest, LoSA,
SparseD on the cache).

Under a cache whose keys stay fixed for a block (``StepInfo.static``: Fast-dLLM's prefix and dual
caches, block diffusion), a cached call's keys split into the rows the call recomputed (``fresh``: the
block, plus the masked suffix under the prefix cache) and the cached rows (``static``). The fresh part
is attended densely (it changes every step, and it is small); the static part is where the methods
differ; the two are merged exactly by their log-sum-exps.

A block's first call is dense: the refresh that starts it (a full-canvas call) or, where there is no
refresh (block diffusion), its first cached call; a method takes its per-block state from it
(``on_block_start``). A method that gets no block layout (no cache, or a cache whose cached set
moves every step such as dKV-Cache) is rejected up front by ``needs_static_cache``.

KV density (LoSA's metric): per cached call and layer, the static keys a kernel serving the call's
queries loads (per K/V head, after the union over the queries) over all static keys; reported over the
sparse calls (``kv_density``) and with the block's dense calls counted as 1 (``kv_density_with_dense``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from sparsed.attention.base import AttentionMethod, Layout, StepInfo, pairs
from sparsed.attention.dense_kernels import dense_attention
from sparsed.attention.lse import attention_lse, merge


class StaticSplitMethod(AttentionMethod):
    supports_layout = True
    needs_static_cache: ClassVar[bool] = True

    def __init__(self) -> None:
        super().__init__()
        self.kv_loaded: dict[int, float] = {}  # per layer: static keys loaded, summed over sparse calls and heads
        self.kv_total: dict[int, float] = {}
        self.kv_dense: dict[int, float] = {}  # static keys of the dense (init) calls

    def reset(self) -> None:
        self.kv_loaded, self.kv_total, self.kv_dense = {}, {}, {}
        self.reset_blocks()

    def reset_blocks(self) -> None:
        """Drop per-block state (override)."""

    # -- the two parts ----------------------------------------------------------------------------------
    # whether ``on_block_start`` needs the block's dense static output and LSE (LoSA caches them)
    wants_block_start_output: ClassVar[bool] = False

    def on_block_start(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       key_valid: torch.Tensor | None, where: StepInfo, static: tuple[tuple[int, int], ...],
                       out: torch.Tensor | None, lse: torch.Tensor | None) -> None:
        """The block's first, dense call: ``q`` are the fresh rows' queries, (``out``, ``lse``) their exact
        attention over the static keys when ``wants_block_start_output`` (override to keep per-block state)."""

    def static_attention(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         key_valid: torch.Tensor | None, where: StepInfo,
                         static: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, LSE, static keys loaded [B, Hkv]) of the queries ``q`` over the static keys (override)."""
        raise NotImplementedError

    # -- AttentionMethod ----------------------------------------------------------------------------------
    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see AttentionMethod
        n = pairs(q, k)
        self.record(layer, n, n, sparse=False)
        where = self.where
        if where is not None and where.refresh and where.fresh is not None and where.static is not None:
            lo, hi = where.fresh
            qf = q[:, :, lo:hi]
            out = lse = None
            if self.wants_block_start_output:
                out, lse = dense_static(qf, k, v, key_valid, where.static)
            self.on_block_start(layer, qf, k, v, key_valid, where, where.static, out, lse)
            self.count_dense_static(layer, where.static, key_valid, q.shape[0], k.shape[1], k.device)
        return dense_attention(q, k, v, key_valid)

    def attend_layout(self, layer, q, k, v, key_valid, layout: Layout):  # noqa: ANN001, ANN201
        where = self.where
        if (where is None or where.static is None or layout.span is None or where.fresh != layout.span
                or where.refresh):  # a prefill, or block diffusion's store call of a finished block: dense
            n = pairs(q, k)  # a call outside a block-static cache (e.g. block diffusion's prefill): dense
            self.record(layer, n, n, sparse=False)
            mask = layout.key_mask(key_valid) if layout.block is not None else key_valid
            return dense_attention(q, k, v, mask)
        lo, hi = layout.span
        static = tuple((a, min(b, layout.key_len)) for a, b in where.static if a < min(b, layout.key_len))
        fmask = None
        if key_valid is not None:
            fmask = key_valid[:, None, None, lo:hi]
        o_f, lse_f = attention_lse(q, k[:, :, lo:hi], v[:, :, lo:hi], fmask)
        if not static:
            self.record(layer, pairs(q, k), pairs(q, k), sparse=False)
            return o_f
        if where.step_in_block == 0:  # the block's first call is already a cached one (block diffusion): dense
            o_s, lse_s = dense_static(q, k, v, key_valid, static)
            self.on_block_start(layer, q, k, v, key_valid, where, static, o_s, lse_s)
            self.count_dense_static(layer, static, key_valid, q.shape[0], k.shape[1], k.device)
            n = pairs(q, k)
            self.record(layer, n, n, sparse=False)
            return merge(o_f, lse_f, o_s, lse_s)[0]
        o_s, lse_s, loaded = self.static_attention(layer, q, k, v, key_valid, where, static)
        out, _ = merge(o_f, lse_f, o_s, lse_s)
        self._count_density(layer, q, k, loaded, static, key_valid, hi - lo)
        return out

    def _count_density(self, layer: int, q: torch.Tensor, k: torch.Tensor, loaded: torch.Tensor,
                       static: tuple[tuple[int, int], ...], key_valid: torch.Tensor | None, fresh: int) -> None:
        B, Hq, Lq, _ = q.shape
        Hkv = k.shape[1]
        total = _static_keys(static, key_valid, B, k.device)  # [B]
        self.kv_loaded[layer] = self.kv_loaded.get(layer, 0.0) + float(loaded.sum())
        self.kv_total[layer] = self.kv_total.get(layer, 0.0) + float(total.sum()) * Hkv
        # attended pairs for the plain density: fresh keys for every query + the loaded static keys per query
        attended = B * Hq * Lq * fresh + float(loaded.sum()) * (Hq // Hkv) * Lq
        self.record(layer, attended, pairs(q, k), sparse=True)

    def count_dense_static(self, layer: int, static: tuple[tuple[int, int], ...], key_valid: torch.Tensor | None,
                           batch: int, n_kv: int, device: torch.device) -> None:
        """A dense call over the static keys (the block's init): counts as density 1 in ``kv_density_with_dense``."""
        self.kv_dense[layer] = self.kv_dense.get(layer, 0.0) + float(_static_keys(static, key_valid, batch, device).sum()) * n_kv

    def report(self) -> dict[str, Any]:
        rep = super().report()
        layers = sorted(self.kv_total)
        loaded, total = sum(self.kv_loaded.values()), sum(self.kv_total.values())
        dense = sum(self.kv_dense.values())
        rep["kv_density"] = round(loaded / total, 6) if total else None
        rep["kv_density_with_dense"] = round((loaded + dense) / (total + dense), 6) if total + dense else None
        rep["kv_density_per_layer"] = {str(i): round(self.kv_loaded[i] / self.kv_total[i], 6) for i in layers}
        return rep


def _static_keys(static: tuple[tuple[int, int], ...], key_valid: torch.Tensor | None, batch: int,
                 device: torch.device) -> torch.Tensor:
    """[B] real (non-padding) keys in the static ranges."""
    if key_valid is None:
        return torch.full((batch,), float(sum(b - a for a, b in static)), device=device)
    return sum(key_valid[:, a:b].sum(-1).float() for a, b in static)  # type: ignore[return-value]


def static_mask(static: tuple[tuple[int, int], ...], key_len: int, device: torch.device) -> torch.Tensor:
    """bool [key_len]: the static rows."""
    m = torch.zeros(key_len, dtype=torch.bool, device=device)
    for a, b in static:
        m[a:b] = True
    return m


def dense_static(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor | None,
                 static: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention of ``q`` over the static keys only, with its LSE."""
    idx = torch.cat([torch.arange(a, b, device=k.device) for a, b in static])
    mask = None if key_valid is None else key_valid[:, idx][:, None, None, :]
    return attention_lse(q, k[:, :, idx], v[:, :, idx], mask)
