"""Dense bidirectional attention: the FlashAttention baseline, with a selectable kernel."""

from __future__ import annotations

from dataclasses import dataclass

from sparsed.attention.base import AttentionMethod
from sparsed.attention.kernels import DENSE_BACKENDS, dense_attention
from sparsed.config_errors import check_choice


@dataclass
class DenseSettings:
    backend: str = "auto"  # auto | cudnn | flash | efficient | math | fa3 | fa4

    def validate(self) -> None:
        check_choice("attention.backend", self.backend, DENSE_BACKENDS)


class Dense(AttentionMethod):
    name = "dense"

    def __init__(self, settings: DenseSettings) -> None:
        super().__init__()
        settings.validate()
        self.s = settings

    def attend(self, layer, q, k, v, key_valid):  # noqa: ANN001, ANN201 - see base class
        B, H, L, _ = q.shape
        self.record(layer, B * H * L * L, B * H * L * L, sparse=False)
        return dense_attention(q, k, v, key_valid, backend=self.s.backend)
