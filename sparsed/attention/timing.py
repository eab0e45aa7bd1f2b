"""Where a step's time goes: the attention calls of a run timed apart from the rest of the model.

``TimedAttention(method)`` wraps the run's method (outputs unchanged) and adds up, per denoising step,
the wall time of its attention calls, synchronising the device around each so the split is real; the
rest of a step (projections, MLP, LM head, sampler) is the step's time minus that. Methods time their
own internal phases into ``timings`` when ``profile`` is set (SparseD: its pattern build). The latency
task switches both on; other runs pay nothing.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, Layout
from sparsed.attention.delegate import DelegatingMethod
from sparsed.sampling.common import synchronize


class TimedAttention(DelegatingMethod):
    def __init__(self, inner: AttentionMethod) -> None:
        super().__init__(inner)
        inner.profile = True
        self.per_step: dict[int, float] = {}

    def start(self, info: GenerationInfo) -> None:
        self.per_step = {}
        super().start(info)

    def forward(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_valid: torch.Tensor | None = None, layout: Layout | None = None) -> torch.Tensor:
        synchronize(q.device)
        t0 = time.perf_counter()
        out = self.inner.forward(layer, q, k, v, key_valid, layout)
        synchronize(q.device)
        step = -1 if self.step is None else self.step
        self.per_step[step] = self.per_step.get(step, 0.0) + time.perf_counter() - t0
        return out

    def report(self) -> dict[str, Any]:
        rep = dict(self.inner.report())
        rep["attention_s_per_step"] = [round(self.per_step[s], 6) for s in sorted(self.per_step)]
        return rep
