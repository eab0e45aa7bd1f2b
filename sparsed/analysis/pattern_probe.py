"""SparseD's block selection at every step of a run: what the pattern would be if it were built there.

``PatternProbe(inner, sparsed)`` hands every call to ``inner`` (normally dense attention) and, at each
(step, layer), asks the SparseD method object itself to build its pattern from that call's q/k
(``SparseD.build_pattern``, the code SparseD runs at its build step), so the analysis measures the
method's own selection, with its settings, compat mode and importance scale.
"""

from __future__ import annotations

from collections.abc import Hashable

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, Layout
from sparsed.attention.delegate import DelegatingMethod
from sparsed.attention.methods.sparsed import SparseD


class PatternProbe(DelegatingMethod):
    """A ``DelegatingMethod``: outputs, name and report are the wrapped method's; ``grids`` are the probe's."""

    def __init__(self, inner: AttentionMethod, sparsed: SparseD, tag: Hashable | None = None) -> None:
        super().__init__(inner)
        self.sparsed = sparsed
        self.tag = tag  # the inner method's memo tag (see switching.StepSwitch)
        self.grids: dict[tuple[int, int], torch.Tensor] = {}  # (step, layer) -> bool [B, Hq, nq, nk]

    def signature(self) -> Hashable | None:
        return self.tag

    def start(self, info: GenerationInfo) -> None:
        if info.has_padding:
            raise ValueError("PatternProbe serves unpadded rows only")
        self.grids = {}
        super().start(info)
        self.sparsed.start(info)

    def finish(self) -> None:
        super().finish()
        self.sparsed.finish()

    def forward(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_valid: torch.Tensor | None = None, layout: Layout | None = None) -> torch.Tensor:
        if layout is not None:
            raise ValueError("PatternProbe serves full-canvas calls only (SparseD's own setting)")
        if self.step is not None:
            self.grids[(self.step, layer)] = self.sparsed.build_pattern(q, k, None).cpu()
        return super().forward(layer, q, k, v, key_valid, layout)

    def grid(self, step: int) -> dict[int, torch.Tensor]:
        """layer -> grid of one step."""
        return {layer: g for (s, layer), g in self.grids.items() if s == step}
