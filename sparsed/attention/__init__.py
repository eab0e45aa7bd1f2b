"""Attention methods behind one interface (see ``base.AttentionMethod``)."""

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.attention.registry import METHODS, build_method, parse_settings

__all__ = ["METHODS", "AttentionMethod", "GenerationInfo", "build_method", "parse_settings"]
