"""dKV-Cache (horseee/dKV-Cache): delayed caching of decoded tokens, and its greedy, prefill and PD variants.

A token's K/V become cacheable only once it is decoded, and are cached one step late: the step after a
commit still recomputes the token (its K/V settle once it is no longer a mask), the step after that
reads it from the cache. With a logit shift (Dream: row p predicts token p+1) a row is cacheable when
the token it predicts is decoded.

* ``dkv_decode`` (dKV-Cache-Decode; LLaDA ``llada_dkv_cache_decode.py``, Dream ``cache_type='decoded'``):
  step i recomputes the rows that were not cacheable after step i-2 and reads the others from the cache;
  every ``refresh_interval``-th step of a block is a full forward. The released LLaDA code also runs
  its block's first two steps in full (it has no cache before its second step); its Dream code caches
  from the second step on, using the prompt as the first cacheable set (``first_cached_step=auto``
  picks the family's). Dream's rows are shifted left: ``shift=un`` rolls the decoded mask by one (so the
  last row is always cacheable once a step has run, a quirk kept), ``un_right`` requires both the token
  and its successor to be decoded; the first cacheable set (from the prompt) repeats the last entry
  instead of rolling, as the released code builds it.
* ``dkv_greedy`` (dKV-Cache-Greedy, LLaDA only, with ``gen.remasking=random_fixed``): every
  ``refresh_interval``-th step is a full forward; the others recompute only the tokens the step commits,
  the tokens the previous step committed, and up to ``window`` still-masked neighbours of each token to
  commit (alternately left and right), all other rows coming from the cache.
* ``dkv_prefill`` (Dream ``cache_type='prefill'``): the prompt (minus its last token) cached from step 0,
  never refreshed; every later step recomputes the rest.
* ``dkv_pd`` (Dream ``cache_type='pd'``): the prefill cache plus dKV-Cache-Decode over the generation;
  its refresh steps recompute everything but the prefill.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsed.cache.base import CacheSettings, CacheStrategy, StepPlan, StepState
from sparsed.cache.registry import CacheSpec
from sparsed.config_errors import ConfigError, check_choice

SHIFTS = ("un", "un_right")
# the step of a block from which the released code reads its cache (see the module docstring)
FIRST_CACHED_STEP = {"llada": 2, "dream": 1}


def _check_interval(node: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{node}.refresh_interval={value!r} must be an integer >= 1 (1 = a full forward every step)")


@dataclass
class DecodeSettings(CacheSettings):
    refresh_interval: int = 8  # a full forward every this many steps of a block (the README's LLaDA example: 8)
    shift: str = "un"  # with shifted logits: un | un_right (see the module docstring)
    first_cached_step: str = "auto"  # auto (the released code's per family) | an integer as a string

    def validate(self) -> None:
        _check_interval("dkv_decode", self.refresh_interval)
        check_choice("dkv_decode.shift", self.shift, SHIFTS)
        if self.first_cached_step != "auto" and not (str(self.first_cached_step).isdigit() and int(self.first_cached_step) >= 1):
            raise ConfigError(f"dkv_decode.first_cached_step={self.first_cached_step!r} must be auto or an integer >= 1")

    def check_gen(self, gen: object, arch: str) -> None:
        if arch == "dream":  # its Dream code runs on the released single-block loop
            _no_blocks(gen, arch, "dkv_decode")


@dataclass
class GreedySettings(CacheSettings):
    refresh_interval: int = 2  # the paper's and README's setting
    window: int = 4  # masked neighbours recomputed around each token to commit (the README: 4)

    def validate(self) -> None:
        _check_interval("dkv_greedy", self.refresh_interval)
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 0:
            raise ConfigError(f"dkv_greedy.window={self.window!r} must be an integer >= 0")

    def check_gen(self, gen: object, arch: str) -> None:
        if getattr(gen, "remasking", None) != "random_fixed":
            raise ConfigError("cache=dkv_greedy needs gen.remasking=random_fixed (dKV-Cache-Greedy decodes in a "
                              "random order fixed per block)")


@dataclass
class PDSettings(CacheSettings):
    refresh_interval: int = 4  # the paper's Dream setting
    shift: str = "un"

    def validate(self) -> None:
        _check_interval("dkv_pd", self.refresh_interval)
        check_choice("dkv_pd.shift", self.shift, SHIFTS)

    def check_gen(self, gen: object, arch: str) -> None:
        _no_blocks(gen, arch, "dkv_pd")


def _no_blocks(gen: object, arch: str, name: str) -> None:
    if getattr(gen, "block_length", None) is not None:
        raise ConfigError(f"cache={name} runs on Dream's released sampler, which has no blocks; set gen.block_length=null")


def rows_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """bool [B, L] -> int64 [B, n] of the True positions per row, short rows padded with their last one."""
    counts = mask.sum(-1)
    n = int(counts.max())
    order = torch.argsort((~mask).to(torch.int8), dim=-1, stable=True)[:, :n]
    if bool((counts < n).any()):
        last = order.gather(1, (counts - 1).clamp(min=0)[:, None])
        keep = torch.arange(n, device=mask.device)[None] < counts[:, None]
        order = torch.where(keep, order, last)
    return order


class _Delayed(CacheStrategy):
    """The one-step-late rule shared by the decode and pd variants."""

    uses_kv = True

    def _cacheable(self, decoded: torch.Tensor, shift: str, initial: bool = False) -> torch.Tensor:
        if self.facts.logit_shift == 0:
            return decoded
        if initial:  # the released code's first cacheable set repeats the last entry instead of rolling
            return torch.cat([decoded[:, 1:], decoded[:, -1:]], dim=1)
        if shift == "un":
            return torch.cat([decoded[:, 1:], decoded[:, :1]], dim=1)
        both = decoded[:, :-1] & decoded[:, 1:]
        return torch.cat([both, both[:, -1:]], dim=1)

    def start_block(self, block: int, lo: int, hi: int, order: torch.Tensor | None) -> None:
        self.history: list[torch.Tensor] = []  # decoded sets: before the block, then after each of its steps

    def plan(self, state: StepState) -> StepPlan:
        if not self.history:
            self.history.append(state.decoded)
        return StepPlan()

    def observe(self, state: StepState, x_after: torch.Tensor, upcoming: torch.Tensor | None) -> None:
        self.history.append(x_after != state.mask_id)

    def _delayed_rows(self, state: StepState, shift: str) -> torch.Tensor:
        # history[0] = before the block, history[k] = after step k-1: D_{i-2} is history[i-1]
        k = state.step_in_block - 1
        cached = self._cacheable(self.history[k], shift, initial=k == 0)
        return rows_from_mask(~cached)


class DKVDecode(_Delayed):
    name = "dkv_decode"
    families = ("llada", "dream")

    def plan(self, state: StepState) -> StepPlan:
        super().plan(state)
        s: DecodeSettings = self.s  # type: ignore[assignment]
        i = state.step_in_block
        first = FIRST_CACHED_STEP.get(self.facts.arch, 1) if s.first_cached_step == "auto" else int(s.first_cached_step)
        if i < first or i % s.refresh_interval == 0:
            return StepPlan()
        return StepPlan(rows=self._delayed_rows(state, s.shift))


class DKVPrefill(_Delayed):
    name = "dkv_prefill"
    families = ("dream",)

    def plan(self, state: StepState) -> StepPlan:
        super().plan(state)
        if state.step_in_block == 0:
            return StepPlan()
        return StepPlan(rows=rows_from_mask(~self._cacheable(self.history[0], "un", initial=True)))


class DKVPrefillDecode(_Delayed):
    name = "dkv_pd"
    families = ("dream",)

    def plan(self, state: StepState) -> StepPlan:
        super().plan(state)
        s: PDSettings = self.s  # type: ignore[assignment]
        i = state.step_in_block
        if i == 0:
            return StepPlan()
        if i % s.refresh_interval == 0:  # refresh the decode part; the prefill stays
            return StepPlan(rows=rows_from_mask(~self._cacheable(self.history[0], s.shift, initial=True)))
        return StepPlan(rows=self._delayed_rows(state, s.shift))


def window_rows(next_rows: torch.Tensor, targets: list[int], masked: torch.Tensor, size: int) -> None:
    """dKV-Cache-Greedy's window: for each target in commit order, up to ``size`` masked positions not yet
    chosen, looked for alternately to the left and to the right (in place on ``next_rows`` [L])."""
    L = next_rows.shape[0]
    for t in targets:
        left, right, count, go_left = t - 1, t + 1, 0, True
        while count < size:
            if go_left:
                if left >= 0 and not next_rows[left] and masked[left]:
                    next_rows[left] = True
                    count += 1
                left -= 1
            else:
                if right < L and not next_rows[right] and masked[right]:
                    next_rows[right] = True
                    count += 1
                right += 1
            go_left = not go_left
            if left < 0 and right > L:
                break


class DKVGreedy(CacheStrategy):
    name = "dkv_greedy"
    uses_kv = True
    families = ("llada",)

    def start_block(self, block: int, lo: int, hi: int, order: torch.Tensor | None) -> None:
        self.ranks = order  # [B, L] position -> rank in the block's commit order (-1 outside)
        self.next_rows: torch.Tensor | None = None

    def plan(self, state: StepState) -> StepPlan:
        s: GreedySettings = self.s  # type: ignore[assignment]
        if state.step_in_block % s.refresh_interval == 0 or self.next_rows is None:
            return StepPlan()
        return StepPlan(rows=rows_from_mask(self.next_rows))

    def observe(self, state: StepState, x_after: torch.Tensor, upcoming: torch.Tensor | None) -> None:
        s: GreedySettings = self.s  # type: ignore[assignment]
        if upcoming is None:
            self.next_rows = None
            return
        before = state.decoded
        committed = (x_after != state.mask_id) & ~before
        nxt = upcoming | committed
        if s.window > 0:
            masked = ~before
            for r in range(nxt.shape[0]):
                targets = upcoming[r].nonzero().flatten()
                if self.ranks is not None:  # in commit order, as the original walks them
                    targets = targets[self.ranks[r, targets].argsort()]
                window_rows(nxt[r], targets.tolist(), masked[r], s.window)
        self.next_rows = nxt


class PrefillSettings(CacheSettings):
    def check_gen(self, gen: object, arch: str) -> None:
        _no_blocks(gen, arch, "dkv_prefill")


CACHES = [
    CacheSpec("dkv_decode", DecodeSettings, DKVDecode, "dKV-Cache-Decode: decoded tokens cached one step late"),
    CacheSpec("dkv_greedy", GreedySettings, DKVGreedy, "dKV-Cache-Greedy: recompute only the tokens around this step's"),
    CacheSpec("dkv_prefill", PrefillSettings, DKVPrefill, "dKV-Cache-Prefill: the prompt cached once (Dream)"),
    CacheSpec("dkv_pd", PDSettings, DKVPrefillDecode, "dKV-Cache-PD: prefill cache + delayed decode cache (Dream)"),
]
