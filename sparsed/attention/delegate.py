"""An attention method that wraps another one: every call goes to the wrapped method unchanged.

Instrumentation (timing, recording) subclasses this and adds its own work around ``forward``; outputs,
schedule, counters and report stay the wrapped method's, so a run with the wrapper computes exactly
what it computes without it.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, LayerStats, Layout, StepInfo


class DelegatingMethod(AttentionMethod):
    def __init__(self, inner: AttentionMethod) -> None:
        # not the base initialiser: the state (counters, schedule) belongs to the wrapped method
        self.inner = inner
        self.facts = inner.facts
        self.info: GenerationInfo | None = None
        self.step: int | None = None
        self.where: StepInfo | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def supports_layout(self) -> bool:  # type: ignore[override]
        return self.inner.supports_layout

    @property
    def stats(self) -> dict[int, LayerStats]:  # type: ignore[override]
        return self.inner.stats

    # The profiling switch and its phase timings are the wrapped method's too, so that wrappers nest in any
    # order: TimedAttention around another wrapper still switches on the real method's phase timing.
    @property
    def profile(self) -> bool:  # type: ignore[override]
        return self.inner.profile

    @profile.setter
    def profile(self, value: bool) -> None:
        self.inner.profile = value

    @property
    def timings(self) -> dict[str, float]:  # type: ignore[override]
        return self.inner.timings

    def start(self, info: GenerationInfo) -> None:
        self.info, self.step, self.where = info, None, None
        self.inner.start(info)

    def set_step(self, step: int | None, where: StepInfo | None = None) -> None:
        self.step, self.where = step, where
        self.inner.set_step(step, where)

    def finish(self) -> None:
        self.inner.finish()
        self.info, self.step, self.where = None, None, None

    def forward(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_valid: torch.Tensor | None = None, layout: Layout | None = None) -> torch.Tensor:
        return self.inner.forward(layer, q, k, v, key_valid, layout)

    def report(self) -> dict[str, Any]:
        return self.inner.report()
