"""Fast-dLLM's block-wise KV caches (NVlabs/Fast-dLLM v1, ``llada/generate.py`` and Dream's
``generation_utils_block.py``): the prefix cache and the dual cache.

Both start every semi-autoregressive block with a full forward (the refresh), whose K/V stay in the
cache for the rest of the block; that forward also commits the block's first step.

* ``prefix``: later steps recompute the block and everything after it (the still-masked later blocks
  too, whose K/V are never cached); the prompt and finished blocks keep the refresh's K/V.
* ``dual``: later steps recompute the block only; the prefix and the masked suffix keep the refresh's
  K/V (the suffix is stale mask context).

Quirk kept (default): after the refresh the original enters its cached loop without checking whether
the refresh already decoded the whole block (possible with a threshold), so one more forward runs and
commits nothing; it counts in NFE. With a fixed schedule that cannot happen.

Parallel decoding (``gen.threshold``, ``gen.factor``) is a sampler setting, independent of the cache;
Fast-dLLM's paper setting is the prefix cache with threshold 0.9 (``configs/cache/fast_dllm.yaml``).
"""

from __future__ import annotations

from sparsed.cache.base import CacheSettings, CacheStrategy, StepPlan, StepState
from sparsed.cache.registry import CacheSpec


class PrefixCache(CacheStrategy):
    name = "prefix"
    uses_kv = True
    families = ("llada", "dream")
    extra_step_after_refresh = True
    static_within_block = True
    blockwise = True

    def plan(self, state: StepState) -> StepPlan:
        if state.step_in_block == 0:
            return StepPlan()
        return StepPlan(rows=(state.lo, state.x.shape[1]))

    def block_layout(self, lo: int, hi: int, length: int) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
        return (lo, length), ((0, lo),)


class DualCache(PrefixCache):
    name = "dual"

    def plan(self, state: StepState) -> StepPlan:
        if state.step_in_block == 0:
            return StepPlan()
        return StepPlan(rows=(state.lo, state.hi))

    def block_layout(self, lo: int, hi: int, length: int) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
        return (lo, hi), tuple(r for r in ((0, lo), (hi, length)) if r[1] > r[0])


CACHES = [
    CacheSpec("prefix", CacheSettings, PrefixCache, "Fast-dLLM prefix cache: refresh per block, recompute block + suffix"),
    CacheSpec("dual", CacheSettings, DualCache, "Fast-dLLM dual cache: refresh per block, recompute the block only"),
]
