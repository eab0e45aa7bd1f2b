"""Attention that switches from one method to another at a given denoising step (Full->Sparse, Sparse->Full).

``StepSwitch(first, then, at)`` runs ``first`` for steps < ``at`` and ``then`` from step ``at`` on; both
get every schedule hook, so each keeps its own state. ``tags`` declare the two methods stateless (the
output of a call is a function of the canvas and the tag only), which lets ``memo.MemoModel`` reuse a
forward that an earlier run already computed on the same canvas; None (the default) means "not known to
be stateless" and nothing is reused.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, Layout, StepInfo


class StepSwitch(AttentionMethod):
    name = "step_switch"

    def __init__(self, first: AttentionMethod, then: AttentionMethod, at: int,
                 tags: tuple[Hashable | None, Hashable | None] = (None, None)) -> None:
        super().__init__()
        self.first, self.then, self.at, self.tags = first, then, at, tags

    def active(self) -> AttentionMethod:
        return self.first if self.step is None or self.step < self.at else self.then

    def signature(self) -> Hashable | None:
        """The active method's tag: what a call computes besides the canvas (None: not reusable)."""
        return self.tags[0] if self.step is None or self.step < self.at else self.tags[1]

    def start(self, info: GenerationInfo) -> None:
        super().start(info)
        self.first.start(info)
        self.then.start(info)

    def set_step(self, step: int | None, where: StepInfo | None = None) -> None:
        super().set_step(step, where)
        self.first.set_step(step, where)
        self.then.set_step(step, where)

    def finish(self) -> None:
        self.first.finish()
        self.then.finish()
        super().finish()

    def forward(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_valid: torch.Tensor | None = None, layout: Layout | None = None) -> torch.Tensor:
        return self.active().forward(layer, q, k, v, key_valid, layout)

    def report(self) -> dict[str, Any]:
        return {"method": self.name, "at": self.at, "first": self.first.report(), "then": self.then.report()}
