"""Attention methods by name, with their typed settings.

Adding a method: one module with a settings dataclass (with ``validate``) and an ``AttentionMethod``
subclass, one line here, and one ``configs/attention/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sparsed.attention.base import AttentionMethod
from sparsed.attention.dense import Dense, DenseSettings
from sparsed.attention.sliding_window import SlidingWindow, SlidingWindowSettings
from sparsed.attention.sparsed import SparseD, SparseDSettings
from sparsed.attention.streaming_llm import StreamingLLM, StreamingLLMSettings
from sparsed.config_errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    settings_cls: type
    build: Callable[..., AttentionMethod]


METHODS: dict[str, MethodSpec] = {
    "dense": MethodSpec(DenseSettings, lambda s, **kw: Dense(s)),
    "sparsed": MethodSpec(SparseDSettings, lambda s, **kw: SparseD(s, kw.get("num_heads"))),
    "sliding_window": MethodSpec(SlidingWindowSettings, lambda s, **kw: SlidingWindow(s)),
    "streaming_llm": MethodSpec(StreamingLLMSettings, lambda s, **kw: StreamingLLM(s)),
}


def parse_settings(name: str, values: Mapping[str, Any], where: str = "attention") -> Any:
    """Typed, validated settings for method ``name`` from a plain mapping (unknown keys are errors)."""
    if name not in METHODS:
        raise ConfigError(f"attention.name={name!r} is not a known method; choose one of: {', '.join(METHODS)}")
    cls = METHODS[name].settings_cls
    allowed = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(f"{where}.{key} is not a setting of {name}; allowed: {', '.join(allowed)}")
        kwargs[key] = value
    settings = cls(**kwargs)
    settings.validate()
    return settings


def build_method(name: str, settings: Any | Mapping[str, Any] | None = None, **model_facts: Any) -> AttentionMethod:
    """An attention method object; ``model_facts`` (e.g. ``num_heads``) only feed model-dependent quirks."""
    if settings is None or isinstance(settings, Mapping):
        settings = parse_settings(name, settings or {})
    return METHODS[name].build(settings, **model_facts)
