"""The one attention interface every model calls and every method implements.

A model hands each layer's post-RoPE ``q`` ([B, Hq, Lq, D]) and ``k``/``v`` ([B, Hkv, Lk, D]) to
``AttentionMethod.forward`` and never learns which method runs. A plain call covers the whole canvas
(Lq == Lk, query row i is canvas row i). A call that serves a KV cache, or a block-causal model, comes
with a ``Layout``: which canvas rows the queries are, how many canvas rows the keys cover (the rows that
were not recomputed come from the cache) and the block size of a block-causal mask.

A sampler tells the method where it is in the denoising schedule (``start`` once per generation,
``set_step`` before every model call, with a ``StepInfo`` naming the semi-autoregressive block and
whether the call refreshes the cache); the method keeps whatever state it needs (cached patterns,
counters) on itself, keyed by layer index.

Each method's settings are a dataclass deriving from ``MethodSettings``: they validate themselves and
answer which denoising steps run dense and which sparse (``step_kinds``), so that config checks,
evaluation, analysis and result files ask the method instead of re-deriving its schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts


@dataclass
class GenerationInfo:
    """What a method may know about the generation it serves (nothing about the model)."""

    batch_size: int
    canvas_length: int  # prompt (with left padding) + generation tokens
    prompt_length: int  # prompt tokens including left padding
    gen_length: int
    total_steps: int
    pad_counts: torch.Tensor | None = None  # [B] left-padding per row, None when no row is padded
    block_length: int | None = None  # semi-autoregressive block, when the sampler has blocks

    @property
    def has_padding(self) -> bool:
        return self.pad_counts is not None and bool((self.pad_counts > 0).any())


@dataclass(frozen=True)
class StepInfo:
    """Where one model call sits in the schedule (samplers that decode block by block fill it)."""

    step: int  # index of the denoising step in the whole generation
    block: int = 0  # semi-autoregressive block index
    block_lo: int | None = None  # canvas rows [block_lo, block_hi) of the current block
    block_hi: int | None = None
    step_in_block: int = 0
    refresh: bool = False  # this call recomputes every row and (re)fills the KV cache
    cached: bool = False  # this call computes only some rows; the rest come from the KV cache
    # when the cache keeps a fixed set of keys for the whole block (Fast-dLLM's caches, block diffusion):
    # the canvas rows the block's cached calls recompute, and the key ranges that stay cached meanwhile
    fresh: tuple[int, int] | None = None
    static: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Layout:
    """Where a non-plain call's queries and keys sit on the canvas.

    ``q_pos`` [B, Lq] (int64) are the canvas rows of the queries; keys are canvas rows
    ``0 .. key_len-1`` in order. ``span`` is ``(lo, hi)`` when every batch row's queries are rows
    ``lo .. hi-1`` (the common case, cheap to reason about). ``block`` is the block size of a
    block-causal model: a query of block j sees keys of blocks <= j only.
    """

    q_pos: torch.Tensor
    key_len: int
    span: tuple[int, int] | None = None
    block: int | None = None

    def key_mask(self, key_valid: torch.Tensor | None) -> torch.Tensor | None:
        """bool [B, 1, Lq, Lk] (True = may attend) for the block-causal rule and padding; None = all keys."""
        mask = None
        if self.block is not None:
            kb = torch.arange(self.key_len, device=self.q_pos.device) // self.block
            qb = self.q_pos // self.block
            if self.span is None or int(kb[-1]) > (self.span[0] // self.block):
                mask = (kb[None, None, :] <= qb[:, :, None])[:, None]
        if key_valid is not None:
            kv = key_valid[:, None, None, : self.key_len]
            mask = kv if mask is None else mask & kv
        return mask


class MethodSettings:
    """Base of every method's settings dataclass: validation and the dense/sparse schedule."""

    def validate(self) -> None:
        """Raise ConfigError naming the bad setting (override)."""

    def step_kinds(self, total_steps: int) -> list[str]:
        """``"dense"`` or ``"sparse"`` for each denoising step of a ``total_steps`` generation (no cache)."""
        return ["sparse"] * total_steps

    def check_schedule(self, total_steps: int, where: str = "gen.steps") -> None:
        """A ConfigError when a generation of ``total_steps`` steps cannot run under these settings."""


def check_has_sparse_step(settings: MethodSettings, node: str, total_steps: int, where: str) -> None:
    """The schedule check shared by methods that start dense: at least one sparse step must remain."""
    if "sparse" not in settings.step_kinds(total_steps):
        raise ConfigError(f"{node} leaves no sparse step out of {total_steps} steps ({where})")


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
    """Base class: dense semantics, no state. Subclasses override ``attend`` (and ``attend_layout``)."""

    name: ClassVar[str] = "base"
    # whether ``attend_layout`` serves cached and block-causal calls (False: the run is rejected up front)
    supports_layout: ClassVar[bool] = False

    def __init__(self) -> None:
        self.info: GenerationInfo | None = None
        self.step: int | None = None
        self.where: StepInfo | None = None
        self.stats: dict[int, LayerStats] = {}
        self.facts = ModelFacts()
        self.profile = False  # time internal phases into ``timings`` (the latency task sets it)
        self.timings: dict[str, float] = {}

    # -- schedule hooks, called by samplers -------------------------------------------------------
    def start(self, info: GenerationInfo) -> None:
        """A new generation begins: forget every cached pattern and counter."""
        self.info = info
        self.step = None
        self.where = None
        self.stats = {}
        self.timings = {}
        self.reset()

    def reset(self) -> None:
        """Drop method-specific state (override when a method caches something)."""

    def set_step(self, step: int | None, where: StepInfo | None = None) -> None:
        self.step = step
        self.where = where

    def finish(self) -> None:
        """The generation is over; a plain forward afterwards runs dense."""
        self.info = None
        self.step = None
        self.where = None

    # -- the entry point models call ----------------------------------------------------------------
    def forward(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None = None,
        layout: Layout | None = None,
    ) -> torch.Tensor:
        """Attention output [B, Hq, Lq, D]; ``key_valid`` is a bool [B, Lk] (True = real token)."""
        if layout is None:
            return self.attend(layer, q, k, v, key_valid)
        return self.attend_layout(layer, q, k, v, key_valid, layout)

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def attend_layout(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_valid: torch.Tensor | None,
        layout: Layout,
    ) -> torch.Tensor:
        raise NotImplementedError(f"attention method {self.name!r} does not serve cached or block-causal calls")

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
        out = {
            "method": self.name,
            "density_per_layer": per_layer,
            "density_mean": round(attended / total, 6) if total else 1.0,
            "sparse_calls": sum(s.sparse_calls for s in self.stats.values()),
            "dense_calls": sum(s.dense_calls for s in self.stats.values()),
        }
        if self.timings:
            out["timings_s"] = {k: round(v, 6) for k, v in self.timings.items()}
        return out

    def timed(self, phase: str, device: torch.device):  # noqa: ANN201 - a context manager
        """Add the wall time of a block to ``timings[phase]`` when profiling (device synchronised)."""
        return _Phase(self, phase, device)


class _Phase:
    def __init__(self, method: AttentionMethod, phase: str, device: torch.device) -> None:
        self.m, self.phase, self.device = method, phase, device

    def __enter__(self) -> None:
        if self.m.profile:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.m.profile:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.m.timings[self.phase] = self.m.timings.get(self.phase, 0.0) + time.perf_counter() - self.t0


def pairs(q: torch.Tensor, k: torch.Tensor) -> float:
    """All (query, key) pairs of one call: B * Hq * Lq * Lk."""
    B, H, Lq, _ = q.shape
    return float(B * H * Lq * k.shape[2])
