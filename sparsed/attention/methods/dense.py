"""Dense bidirectional attention: the FlashAttention baseline, with a selectable kernel."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsed.attention.base import AttentionMethod, Layout, MethodSettings, pairs
from sparsed.attention.dense_kernels import DENSE_BACKENDS, check_backend_runtime, dense_attention
from sparsed.attention.registry import MethodSpec
from sparsed.config_errors import check_choice
from sparsed.facts import ModelFacts


@dataclass
class DenseSettings(MethodSettings):
    backend: str = "auto"  # auto | cudnn | flash | efficient | math | fa3 | fa4

    def validate(self) -> None:
        check_choice("dense.backend", self.backend, DENSE_BACKENDS)

    def step_kinds(self, total_steps: int) -> list[str]:
        return ["dense"] * total_steps

    def check_runtime(self, device: torch.device) -> None:
        check_backend_runtime("dense.backend", self.backend, device)


class Dense(AttentionMethod):
    name = "dense"
    supports_layout = True

    def __init__(self, settings: DenseSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see base class
        n = pairs(q, k)
        self.record(layer, n, n, sparse=False)
        return dense_attention(q, k, v, key_valid, backend=self.s.backend)

    def attend_layout(self, layer, q, k, v, key_valid, layout: Layout):  # noqa: ANN001, ANN201
        n = pairs(q, k)
        self.record(layer, n, n, sparse=False)
        mask = layout.key_mask(key_valid) if layout.block is not None else key_valid
        return dense_attention(q, k, v, mask, backend=self.s.backend)


METHOD = MethodSpec("dense", DenseSettings, Dense, "dense attention over every key (FlashAttention-class kernels)")
