"""Sliding-window baseline: every query sees the ``ws`` keys centred on it (bidirectional)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsed.attention.base import MethodSettings
from sparsed.attention.masked import FixedPatternMethod, MaskMod
from sparsed.attention.registry import MethodSpec
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts


@dataclass
class SlidingWindowSettings(MethodSettings):
    ws: int = 2048  # total window width in tokens: ws//2 keys on each side of the query

    def validate(self) -> None:
        if not isinstance(self.ws, int) or self.ws <= 0:
            raise ConfigError(f"sliding_window.ws={self.ws} must be a positive number of tokens")


def window_mask(half: int) -> MaskMod:
    def mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's signature
        return (q_idx - kv_idx).abs() <= half

    return mask_mod


def window_density(length: int, half: int) -> float:
    """Fraction of the L x L pairs with |q - k| <= half."""
    h = min(half, length - 1)
    inside = length * (2 * h + 1) - h * (h + 1)
    return inside / (length * length)


class SlidingWindow(FixedPatternMethod):
    name = "sliding_window"

    def __init__(self, settings: SlidingWindowSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings

    def mask_mod(self, length: int, valid_len: torch.Tensor | None = None) -> MaskMod:
        return window_mask(self.s.ws // 2)

    def density(self, length: int) -> float:
        return window_density(length, self.s.ws // 2)


METHOD = MethodSpec("sliding_window", SlidingWindowSettings, SlidingWindow, "a bidirectional window of ws tokens")
