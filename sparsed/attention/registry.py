"""Attention methods by name, with their typed settings, found in ``sparsed/attention/methods/``.

Adding a method is one module there that defines ``METHOD = MethodSpec(...)`` (its settings dataclass
and its ``AttentionMethod`` subclass) plus one ``configs/attention/<name>.yaml``. Nothing else lists
methods: the run schema gets a node named after each method from here, the config checks call the
method's own settings, and the method resolves its model-dependent quirks from ``ModelFacts``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sparsed.attention.base import AttentionMethod, MethodSettings
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts
from sparsed.lazy_registry import LazyRegistry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    settings_cls: type[MethodSettings]
    method_cls: type[AttentionMethod]
    summary: str = ""

    def build(self, settings: MethodSettings, facts: ModelFacts) -> AttentionMethod:
        method = self.method_cls(settings, facts)  # type: ignore[call-arg]
        method.facts = facts
        return method


def _method_of(module: Any) -> list[MethodSpec]:  # noqa: ANN401
    spec = getattr(module, "METHOD", None)
    return [spec] if isinstance(spec, MethodSpec) else []


METHODS: LazyRegistry = LazyRegistry("sparsed.attention.methods", _method_of)


def parse_settings(name: str, values: Mapping[str, Any] | None = None, where: str | None = None) -> MethodSettings:
    """Typed, validated settings for method ``name`` from a plain mapping (unknown keys are errors)."""
    if name not in METHODS:
        raise ConfigError(f"attention.name={name!r} is not a known method; choose one of: {', '.join(METHODS)}")
    where = where or name
    cls = METHODS[name].settings_cls
    allowed = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in (values or {}).items():
        if key not in allowed:
            raise ConfigError(f"{where}.{key} is not a setting of {name}; allowed: {', '.join(sorted(allowed))}")
        kwargs[key] = value
    settings = cls(**kwargs)
    settings.validate()
    return settings


def build_method(
    name: str,
    settings: MethodSettings | Mapping[str, Any] | None = None,
    facts: ModelFacts | None = None,
    **fact_values: Any,
) -> AttentionMethod:
    """An attention method object for a model described by ``facts`` (or by keyword facts, e.g. ``n_heads``)."""
    if settings is None or isinstance(settings, Mapping):
        settings = parse_settings(name, settings or {})
    if facts is None:
        if "num_heads" in fact_values:  # the name earlier versions of this function took
            fact_values["n_heads"] = fact_values.pop("num_heads")
        facts = ModelFacts(**fact_values)
    return METHODS[name].build(settings, facts)
