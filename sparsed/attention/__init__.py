"""Attention methods behind one interface (see ``base.AttentionMethod``)."""

from sparsed.attention.base import AttentionMethod, GenerationInfo, Layout, StepInfo
from sparsed.attention.registry import METHODS, build_method, parse_settings
from sparsed.facts import ModelFacts

__all__ = ["METHODS", "AttentionMethod", "GenerationInfo", "Layout", "ModelFacts", "StepInfo", "build_method",
           "parse_settings"]
