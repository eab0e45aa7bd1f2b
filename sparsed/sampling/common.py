"""What the samplers share: the result record, step timing, the attention-method hooks, and the
planned forward of one denoising step (full, or some rows against a KV cache)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, StepInfo
from sparsed.cache.base import CacheStrategy, StepPlan
from sparsed.config_errors import ConfigError
from sparsed.models.kv_cache import KVCache, Rows
from sparsed.models.transformer import DiffusionLM


@dataclass
class StepRecord:
    """One model call of a generation, for result files: full forward or cached, and its size."""

    forward: str  # "full" | "cached"
    rows: int  # canvas rows computed (per batch row)
    committed: int = 0  # tokens committed by the step (summed over the batch)


@dataclass
class GenerationOutput:
    sequences: torch.Tensor  # [B, prompt + gen], prompt included (left padding kept)
    prompt_length: int
    nfe: int = 0  # model evaluations (a CFG step counts its two passes as two)
    step_times: list[float] = field(default_factory=list)  # seconds per denoising step
    steps: list[StepRecord] = field(default_factory=list)
    cache_bytes: int = 0  # largest size the KV cache reached (0 without a cache)

    @property
    def generated(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_length :]

    @property
    def total_time(self) -> float:
        return float(sum(self.step_times))

    def step_summary(self) -> dict[str, Any]:
        full = sum(1 for s in self.steps if s.forward == "full")
        return {"full": full, "cached": len(self.steps) - full, "rows_per_step": [s.rows for s in self.steps],
                "committed_per_step": [s.committed for s in self.steps]}


def make_canvas(
    prompt: torch.Tensor, attention_mask: torch.Tensor | None, gen_length: int, mask_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The canvas (prompt + ``gen_length`` mask tokens) and its key mask (generated positions are real)."""
    x = torch.nn.functional.pad(prompt.to(device), (0, gen_length), value=mask_id)
    full_mask = None
    if attention_mask is not None:
        full_mask = torch.nn.functional.pad(attention_mask.to(device).long(), (0, gen_length), value=1)
    return x, full_mask


def check_block_schedule(gen_length: int, block_length: int | None, steps: int, *, unset: str,
                         steps_note: str = "") -> int:
    """The block geometry every semi-autoregressive sampler needs (``unset``: the error when no block is
    given, ``steps_note``: what the family does with steps per block); returns the number of blocks."""
    if block_length is None:
        raise ConfigError(unset)
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ConfigError(f"gen_length={gen_length}, block_length={block_length}, steps={steps} must all be > 0")
    if gen_length % block_length:
        raise ConfigError(f"gen.gen_length={gen_length} is not divisible by gen.block_length={block_length}")
    n_blocks = gen_length // block_length
    if steps % n_blocks:
        raise ConfigError(f"gen.steps={steps} is not divisible by the number of blocks ({n_blocks} = "
                          f"gen_length/block_length){steps_note}")
    return n_blocks


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of token lists, left-padded to the longest: (ids [B, W], attention mask [B, W], 1 = real)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[r, width - len(s) :] = 1
    return ids, mask


def pad_counts_of(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Left padding per row from a [B, P] 0/1 mask; None when nothing is padded."""
    if attention_mask is None:
        return None
    pads = (attention_mask == 0).sum(-1)
    return pads if bool((pads > 0).any()) else None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Wall time per step, synchronised with the device so that the numbers are real."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    @contextlib.contextmanager
    def step(self) -> Iterator[None]:
        synchronize(self.device)
        t0 = time.perf_counter()
        yield
        synchronize(self.device)
        self.times.append(time.perf_counter() - t0)


@contextlib.contextmanager
def method_session(method: AttentionMethod | None, info: GenerationInfo) -> Iterator[None]:
    """Start a method's per-generation state and always close it, even on errors."""
    if method is not None:
        method.start(info)
    try:
        yield
    finally:
        if method is not None:
            method.finish()


def progress(iterable: range, enabled: bool, desc: str):  # noqa: ANN201 - tqdm or the plain range
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def step_info(strategy: CacheStrategy, plan: StepPlan, *, step: int, block: int, lo: int, hi: int, step_in_block: int,
              length: int) -> StepInfo:
    """What an attention method is told about one call (see ``StepInfo``)."""
    fixed = strategy.block_layout(lo, hi, length) if strategy.uses_kv else None
    return StepInfo(step=step, block=block, block_lo=lo, block_hi=hi, step_in_block=step_in_block,
                    refresh=plan.full and strategy.uses_kv, cached=not plan.full,
                    fresh=None if fixed is None else fixed[0], static=None if fixed is None else fixed[1])


def rows_mask(rows: Rows, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """bool [B, L]: the canvas rows a forward computes."""
    if rows is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    out = torch.zeros(batch, length, dtype=torch.bool, device=device)
    if isinstance(rows, tuple):
        out[:, rows[0] : rows[1]] = True
    else:
        out.scatter_(1, rows.to(device), True)
    return out


def rows_count(rows: Rows, length: int) -> int:
    if rows is None:
        return length
    if isinstance(rows, tuple):
        return rows[1] - rows[0]
    return int(rows.shape[1])


class StepRunner:
    """Runs the planned forward of each step and keeps the KV cache and the step records.

    ``logits(want)`` returns the logits predicting the tokens at the ``want`` positions (bool [B, L]),
    one row per True entry in row-major order: with shifted logits (Dream) position p is predicted by
    canvas row p - 1, which the plan must have computed (a strategy error otherwise). ``own_row_at``
    reproduces Fast-dLLM's Dream block code, which shifts the logits inside the computed slice, so the
    slice's first position is predicted by its own row.
    """

    def __init__(self, model: DiffusionLM, strategy: CacheStrategy, attention: AttentionMethod | None,
                 attention_mask: torch.Tensor | None, canvas_length: int, block: int | None = None) -> None:
        self.model = model
        self.strategy = strategy
        self.attention = attention
        self.attention_mask = attention_mask
        self.kv = KVCache(canvas_length) if strategy.uses_kv else None
        self.block = block
        self.records: list[StepRecord] = []
        self.cache_bytes = 0
        self.shift = 1 if model.args.shift_logits else 0
        self._h: torch.Tensor | None = None
        self._plan: StepPlan | None = None

    def forward(self, x: torch.Tensor, plan: StepPlan, where: StepInfo) -> None:
        if self.attention is not None:
            self.attention.set_step(where.step, where)
        self._plan = plan
        use_cache = self.kv is not None
        self._h = self.model.hidden_states(
            x, self.attention, self.attention_mask, rows=plan.rows, cache=self.kv if use_cache else None,
            key_len=plan.key_len, block=self.block,
        )
        if self.kv is not None:
            self.cache_bytes = max(self.cache_bytes, self.kv.nbytes())
        self.records.append(StepRecord("full" if plan.full else "cached", rows_count(plan.rows, x.shape[1])))

    def computed(self, x: torch.Tensor) -> torch.Tensor:
        """bool [B, L]: positions whose prediction the last forward computed."""
        assert self._plan is not None
        fed = rows_mask(self._plan.rows, x.shape[0], x.shape[1], x.device)
        if self.shift:
            fed = torch.cat([fed[:, :1], fed[:, :-1]], dim=1)
        return fed

    def logits(self, want: torch.Tensor, own_row_at: int | None = None) -> torch.Tensor:
        assert self._h is not None and self._plan is not None
        rows = self._plan.rows
        b, p = want.nonzero(as_tuple=True)
        src = (p - self.shift).clamp(min=0)
        if own_row_at is not None:
            src = torch.where(p == own_row_at, p, src)
        if rows is None:
            j = src
        elif isinstance(rows, tuple):
            j = src - rows[0]
            if bool(((j < 0) | (j >= rows[1] - rows[0])).any()):
                raise RuntimeError(f"cache strategy {self.strategy.name!r} did not compute a row a prediction needs")
        else:
            B, L = want.shape
            inv = torch.full((B, L), -1, dtype=torch.long, device=want.device)
            inv.scatter_(1, rows, torch.arange(rows.shape[1], device=want.device)[None].expand(B, -1))
            j = inv[b, src]
            if bool((j < 0).any()):
                raise RuntimeError(f"cache strategy {self.strategy.name!r} did not compute a row a prediction needs")
        return self.model.head(self._h[b, j])

    def committed(self, n: int) -> None:
        self.records[-1].committed = n
