"""Cache strategies by name, found in ``sparsed/cache/strategies/``.

A cache method is one module there defining ``CACHES = [CacheSpec(...)]`` (one spec per variant, e.g.
Fast-dLLM's prefix and dual caches) plus one ``configs/cache/<name>.yaml`` per variant. A variant with
settings gets a run-config node named after it (``dkv_greedy.window=4``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from sparsed.cache.base import CacheSettings, CacheStrategy
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts
from sparsed.lazy_registry import LazyRegistry


@dataclass(frozen=True)
class CacheSpec:
    name: str
    settings_cls: type[CacheSettings]
    strategy_cls: type[CacheStrategy]
    summary: str = ""

    @property
    def has_settings(self) -> bool:
        return is_dataclass(self.settings_cls) and bool(fields(self.settings_cls))

    def build(self, settings: CacheSettings, facts: ModelFacts) -> CacheStrategy:
        return self.strategy_cls(settings, facts)


CACHES: LazyRegistry = LazyRegistry("sparsed.cache.strategies", lambda m: list(getattr(m, "CACHES", ())),
                                    order=lambda name: (name != "none", name))


def parse_cache_settings(name: str, values: Mapping[str, Any] | None = None) -> CacheSettings:
    if name not in CACHES:
        raise ConfigError(f"cache.name={name!r} is not a known cache strategy; choose one of: {', '.join(CACHES)}")
    spec = CACHES[name]
    values = dict(values or {})
    if not spec.has_settings:
        if values:
            raise ConfigError(f"cache={name} has no settings (got {', '.join(values)})")
        settings = spec.settings_cls()
    else:
        allowed = {f.name for f in fields(spec.settings_cls)}  # type: ignore[arg-type]
        for key in values:
            if key not in allowed:
                raise ConfigError(f"{name}.{key} is not a setting of cache={name}; allowed: {', '.join(sorted(allowed))}")
        settings = spec.settings_cls(**values)
    settings.validate()
    return settings


def build_cache(name: str, settings: CacheSettings | Mapping[str, Any] | None = None,
                facts: ModelFacts | None = None) -> CacheStrategy:
    if settings is None or isinstance(settings, Mapping):
        settings = parse_cache_settings(name, settings or {})
    return CACHES[name].build(settings, facts or ModelFacts())
