"""No cache: every denoising step is a full forward over the canvas (the samplers' original behaviour)."""

from __future__ import annotations

from sparsed.cache.base import CacheSettings, CacheStrategy
from sparsed.cache.registry import CacheSpec


class NoCache(CacheStrategy):
    name = "none"


CACHES = [CacheSpec("none", CacheSettings, NoCache, "no cache: every step recomputes the whole canvas")]
