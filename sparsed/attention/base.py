"""The one attention interface every model calls and every method implements.

A model hands each layer's post-RoPE ``q`` ([B, Hq, L, D]) and ``k``/``v`` ([B, Hkv, L, D]) to
``AttentionMethod.forward`` and never learns which method runs. A sampler tells the method where it is
in the denoising schedule (``start`` once per generation, ``set_step`` before every model call); the
method keeps whatever state it needs (cached patterns, counters) on itself, keyed by layer index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass
class GenerationInfo:
    """What a method may know about the generation it serves (nothing about the model)."""

    batch_size: int
    canvas_length: int  # prompt (with left padding) + generation tokens
    prompt_length: int  # prompt tokens including left padding
    gen_length: int
    total_steps: int
    pad_counts: torch.Tensor | None = None  # [B] left-padding per row, None when no row is padded

    @property
    def has_padding(self) -> bool:
        return self.pad_counts is not None and bool((self.pad_counts > 0).any())


@dataclass
class LayerStats:
    """Attention cost bookkeeping for one layer: attended (query, key) pairs over all pairs."""

    attended: float = 0.0
    total: float = 0.0
    sparse_calls: int = 0
    dense_calls: int = 0

    @property
    def density(self) -> float:
        return self.attended / self.total if self.total else 1.0


class AttentionMethod:
    """Base class: dense semantics, no state. Subclasses override ``attend``."""

    name: ClassVar[str] = "base"

    def __init__(self) -> None:
        self.info: GenerationInfo | None = None
        self.step: int | None = None
        self.stats: dict[int, LayerStats] = {}

    # -- schedule hooks, called by samplers -------------------------------------------------------
    def start(self, info: GenerationInfo) -> None:
        """A new generation begins: forget every cached pattern and counter."""
        self.info = info
        self.step = None
        self.stats = {}
        self.reset()

    def reset(self) -> None:
        """Drop method-specific state (override when a method caches something)."""

    def set_step(self, step: int | None) -> None:
        self.step = step

    def finish(self) -> None:
        """The generation is over; a plain forward afterwards runs dense."""
        self.info = None
        self.step = None

    # -- the entry point models call ----------------------------------------------------------------
    def forward(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention output [B, Hq, L, D]; ``key_valid`` is a bool [B, L] (True = real token)."""
        return self.attend(layer, q, k, v, key_valid)

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- reporting ----------------------------------------------------------------------------------
    def record(self, layer: int, attended: float, total: float, sparse: bool) -> None:
        s = self.stats.setdefault(layer, LayerStats())
        s.attended += attended
        s.total += total
        if sparse:
            s.sparse_calls += 1
        else:
            s.dense_calls += 1

    def report(self) -> dict[str, Any]:
        """Realised density per layer (over every call since ``start``) and the overall mean."""
        per_layer = {str(i): round(s.density, 6) for i, s in sorted(self.stats.items())}
        attended = sum(s.attended for s in self.stats.values())
        total = sum(s.total for s in self.stats.values())
        return {
            "method": self.name,
            "density_per_layer": per_layer,
            "density_mean": round(attended / total, 6) if total else 1.0,
            "sparse_calls": sum(s.sparse_calls for s in self.stats.values()),
            "dense_calls": sum(s.dense_calls for s in self.stats.values()),
        }
