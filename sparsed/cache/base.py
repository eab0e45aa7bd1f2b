"""The interface of KV-cache strategies: which canvas rows each denoising step recomputes.

A sampler asks its strategy at every step for a ``StepPlan`` (``plan``) and tells it what was decoded
(``observe``); the model then computes the planned rows against a ``KVCache`` that holds the others
(``sparsed.models.kv_cache``). A strategy never sees the model or the attention method; where the
released code of a cache method made a model-dependent choice, the strategy resolves it from
``ModelFacts``. Strategies are independent of attention methods: any method whose ``supports_layout``
is true runs under any strategy.

Each strategy's settings are a dataclass deriving from ``CacheSettings``; a strategy without settings
uses ``CacheSettings`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sparsed.facts import ModelFacts
from sparsed.models.kv_cache import Rows


class CacheSettings:
    """Base of every strategy's settings: validation (override)."""

    def validate(self) -> None:
        pass


@dataclass
class StepState:
    """The sampler's state at the start of one denoising step."""

    step: int  # step index in the whole generation
    block: int  # semi-autoregressive block index (0 when the sampler has no blocks)
    step_in_block: int
    lo: int  # canvas rows [lo, hi) of the current block
    hi: int
    x: torch.Tensor  # the canvas [B, L] before this step's commits
    mask_id: int

    @property
    def decoded(self) -> torch.Tensor:
        return self.x != self.mask_id


@dataclass
class StepPlan:
    """Which rows one step recomputes: ``rows=None`` is a full forward (which (re)fills the cache)."""

    rows: Rows = None
    key_len: int | None = None  # keys are canvas rows [0, key_len) (None: the whole canvas)

    @property
    def full(self) -> bool:
        return self.rows is None


class CacheStrategy:
    """Base: no cache (every step a full forward)."""

    name: ClassVar[str] = "none"
    uses_kv: ClassVar[bool] = False  # whether the sampler must allocate a KVCache
    # the families whose sampler this strategy's step rule was written for (None: every family)
    families: ClassVar[tuple[str, ...] | None] = None
    # the original code enters its cached loop after the block's refresh step without checking whether the
    # refresh already decoded the whole block, so one more (cached) forward runs: Fast-dLLM's prefix/dual
    extra_step_after_refresh: ClassVar[bool] = False
    # the cached keys stay fixed for the rest of a block after its refresh (what LoSA-style reuse needs)
    static_within_block: ClassVar[bool] = False
    # the strategy works block by block, so a sampler without blocks (Dream's) switches to its blockwise loop
    blockwise: ClassVar[bool] = False

    def __init__(self, settings: CacheSettings | None = None, facts: ModelFacts | None = None) -> None:
        self.s = settings or CacheSettings()
        self.facts = facts or ModelFacts()

    def start(self, x: torch.Tensor, mask_id: int) -> None:
        """A new generation on canvas ``x`` begins."""

    def start_block(self, block: int, lo: int, hi: int, order: torch.Tensor | None) -> None:
        """A semi-autoregressive block begins; ``order`` [B, L] is the commit order when fixed in advance."""

    def plan(self, state: StepState) -> StepPlan:
        return StepPlan()

    def observe(self, state: StepState, x_after: torch.Tensor, upcoming: torch.Tensor | None) -> None:
        """The step committed its tokens (``x_after``); ``upcoming`` [B, L] marks what the next step commits
        when the sampler knows it in advance (a fixed random order), else None."""

    def block_layout(self, lo: int, hi: int, length: int) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]] | None:
        """(fresh rows, static key ranges) of a block whose cached keys stay fixed, else None."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
