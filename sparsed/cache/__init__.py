"""KV-cache strategies for diffusion LMs (which rows each denoising step recomputes), see ``base``."""

from sparsed.cache.base import CacheSettings, CacheStrategy, StepPlan, StepState
from sparsed.cache.registry import CACHES, build_cache, parse_cache_settings

__all__ = ["CACHES", "CacheSettings", "CacheStrategy", "StepPlan", "StepState", "build_cache", "parse_cache_settings"]
