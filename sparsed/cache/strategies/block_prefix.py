"""Block diffusion's prefix cache (SDAR ``block_diffusion_generate``; TraDo uses the same code).

With block-causal attention a finished block's keys and values never change again, so this cache is
exact: the forwards of the sampler read the finished blocks' K/V and compute the current block only.
The sampler runs three kinds of forward, each planned here as "the rows [lo, hi) against the keys of
canvas rows [0, hi)":

* the prefill: the prompt's whole blocks, once;
* every denoising step: the current block;
* the store forward: the block once more with its final tokens, so that the cache holds the K/V of
  the committed tokens (the released code's ``store_kv=True`` call; its logits are discarded).

Nothing after the current block is ever computed. ``cache=none`` on the same sampler is the uncached
reference: every step recomputes the whole canvas under the block-causal mask (same tokens).
"""

from __future__ import annotations

from sparsed.cache.base import CacheSettings, CacheStrategy, StepPlan, StepState
from sparsed.cache.registry import CacheSpec


class BlockPrefixCache(CacheStrategy):
    name = "block_prefix"
    uses_kv = True
    families = ("sdar",)  # exact only where attention is block-causal
    static_within_block = True
    blockwise = True

    def block_layout(self, lo: int, hi: int, length: int) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
        return (lo, hi), ((0, lo),)

    def plan(self, state: StepState) -> StepPlan:
        if state.lo == 0:  # nothing before these rows: every key is computed, a full forward of the prefix
            return StepPlan(key_len=state.hi)
        return StepPlan(rows=(state.lo, state.hi), key_len=state.hi)


CACHES = [CacheSpec("block_prefix", CacheSettings, BlockPrefixCache,
                    "block diffusion's exact prefix cache (SDAR): the current block against the finished blocks")]
