"""SDAR's block sampler (JetAstra/SDAR ``generate.py: block_diffusion_generate``; TraDo runs the same code).

The canvas is the prompt plus masks up to a whole number of blocks (``block_canvas``). Blocks are
decoded left to right, each with ``steps // (gen_length // block_length)`` denoising steps: a step
draws a candidate token and its probability at every position of the block (``block_rules``) and
commits ``low_confidence_static`` / ``low_confidence_dynamic``'s choice; a block ends when it has no
mask left. Attention is block-causal with the sampler's block length, so a block never sees what
follows it, and a finished block's keys and values never change.

With a KV cache (``cache=block_prefix``, the released code's ``DynamicCache``, and this function's
default) the forwards are the original's, one for one: a prefill of the prompt's whole blocks, up to
``steps`` forwards of the current block against the cached blocks, and one more forward of the
finished block (its logits unused) whose K/V are what the cache keeps. Without one (``cache=none``)
every step recomputes the whole canvas under the block-causal mask: the same tokens, no prefill and no
store forward.

What the attention method sees: every forward has a ``Layout`` (block-causal, the queries' canvas
rows). ``StepInfo.step`` counts model calls; ``block`` is the canvas block of ``block_lo`` (blocks
start at each row's first token); ``refresh`` marks the forwards whose K/V the cache keeps (the
prefill and each block's store forward), ``cached`` the forwards that read other rows from the cache.

Kept from the released code (see ``block_rules``): the step quota counts the full block also in the
partly-prompt first block, and ``topk`` past the masks left overwrites committed (or prompt) tokens.
Differences: a block that still holds a mask after its steps (the model predicted the mask token) is
stored as it is and decoding goes on (the released loop indexes past its schedule and raises); rows
of a batch keep their own block boundaries (the released function takes one sequence); ``stop_ids``
ends decoding after the first block at which every row holds a stop token (the released check, per
batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo, StepInfo
from sparsed.cache.base import CacheStrategy, StepPlan, StepState
from sparsed.cache.strategies.block_prefix import BlockPrefixCache
from sparsed.config_errors import ConfigError
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling import block_rules as rules
from sparsed.sampling.block_canvas import BlockCanvas, build_canvas, unpack_sequences
from sparsed.sampling.common import (
    GenerationOutput,
    StepClock,
    StepRunner,
    check_block_schedule,
    method_session,
    progress,
)


def check_sdar_settings(gen_length: int, block_length: int | None, steps: int, remasking: str,
                        threshold: float | None, temperature: float, top_k: int | None, top_p: float | None) -> None:
    check_block_schedule(gen_length, block_length, steps,
                         unset="gen.block_length must be set for SDAR (its block size; the released models use 4)",
                         steps_note="; SDAR's steps per block = gen.steps / blocks")
    if remasking not in rules.REMASKING:
        raise ConfigError(f"gen.remasking={remasking!r} is not allowed for SDAR; choose one of: {', '.join(rules.REMASKING)}")
    if remasking == "low_confidence_dynamic" and threshold is None:
        raise ConfigError("gen.remasking=low_confidence_dynamic needs gen.threshold (the released default: 0.85)")
    if remasking == "low_confidence_static" and threshold is not None:
        raise ConfigError("gen.threshold is used by gen.remasking=low_confidence_dynamic only (set gen.threshold=null)")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"gen.threshold={threshold} is outside [0, 1]")
    if temperature < 0:
        raise ConfigError(f"gen.temperature={temperature} must be >= 0")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise ConfigError(f"gen.top_k={top_k} must be an integer >= 0 (0 or null: no top-k filter)")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"gen.top_p={top_p} is outside (0, 1]")


def check_gen(gen: Any) -> None:  # noqa: ANN401 - a GenConfig
    """gen.* for this sampler (called before anything loads); settings it does not have are rejected."""
    check_sdar_settings(gen.gen_length, gen.block_length, gen.steps, gen.remasking, gen.threshold, gen.temperature,
                        gen.top_k, gen.top_p)
    if gen.cfg_scale:
        raise ConfigError(f"gen.cfg_scale={gen.cfg_scale}: SDAR's sampler has no classifier-free guidance")
    if gen.factor is not None:
        raise ConfigError("gen.factor is a LLaDA sampler setting (Fast-dLLM's factor rule); SDAR's has none")
    if gen.alg_temp is not None:
        raise ConfigError(f"gen.alg_temp={gen.alg_temp} is a Dream sampler setting; SDAR's has none (set gen.alg_temp=null)")


def _fill_token(model: DiffusionLM, mask_id: int) -> int:
    for tok in (model.args.pad_token_id, model.args.eos_token_id, 0):
        if tok is not None and tok != mask_id:
            return int(tok)
    return 1


class _Calls:
    """Runs and counts the model calls of one generation (each is a timed step with a StepInfo)."""

    def __init__(self, runner: StepRunner, strategy: CacheStrategy, clock: StepClock, block: int) -> None:
        self.runner, self.strategy, self.clock, self.block = runner, strategy, clock, block
        self.count = 0

    def state(self, x: torch.Tensor, lo: int, hi: int, step_in_block: int, mask_id: int) -> StepState:
        return StepState(step=self.count, block=lo // self.block, step_in_block=step_in_block, lo=lo, hi=hi, x=x,
                         mask_id=mask_id)

    def where(self, state: StepState, plan: StepPlan, refresh: bool) -> StepInfo:
        fixed = self.strategy.block_layout(state.lo, state.hi, state.x.shape[1]) if self.strategy.uses_kv else None
        return StepInfo(step=self.count, block=state.block, block_lo=state.lo, block_hi=state.hi,
                        step_in_block=state.step_in_block, refresh=refresh, cached=not plan.full,
                        fresh=None if fixed is None else fixed[0], static=None if fixed is None else fixed[1])

    def store(self, x: torch.Tensor, lo: int, hi: int, step_in_block: int, mask_id: int) -> None:
        """A forward whose K/V the cache keeps and whose logits nobody reads (prefill, end of a block)."""
        state = self.state(x, lo, hi, step_in_block, mask_id)
        plan = self.strategy.plan(state)
        with self.clock.step():
            self.runner.forward(x, plan, self.where(state, plan, refresh=True))
        self.count += 1


@torch.no_grad()
def generate(
    model: DiffusionLM,
    prompt: torch.Tensor,
    *,
    steps: int,
    gen_length: int,
    block_length: int = 4,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    remasking: str = "low_confidence_static",
    threshold: float | None = None,
    stop_ids: Sequence[int] | None = None,
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    cache: CacheStrategy | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    """Generate after ``prompt`` [B, P] (left-padded where ``attention_mask`` has zeros).

    ``steps`` counts denoising steps over ``gen_length // block_length`` blocks (SDAR's
    ``denoising_steps`` per block = ``steps * block_length // gen_length``). ``cache=None`` is the
    released code's KV cache (``BlockPrefixCache``); pass ``build_cache("none")`` for the uncached
    reference. The output holds every generated token of each row's canvas (up to ``block_length - 1``
    more than ``gen_length``).
    """
    check_sdar_settings(gen_length, block_length, steps, remasking, threshold, temperature, top_k, top_p)
    strategy = cache if cache is not None else BlockPrefixCache()
    mask_id = model.args.mask_token_id if mask_id is None else mask_id
    device = model.device
    b = block_length
    per_block = steps // (gen_length // b)
    counts = rules.transfer_counts(b, per_block)
    fill = _fill_token(model, mask_id)
    canvas = build_canvas(prompt.to(device), attention_mask, gen_length, b, mask_id, fill)
    x = canvas.x
    B, W = x.shape
    info = GenerationInfo(
        batch_size=B, canvas_length=W, prompt_length=int(canvas.gen_starts.max()), gen_length=gen_length,
        total_steps=(canvas.n_blocks - canvas.first_block) * per_block,
        pad_counts=canvas.pads if bool((canvas.pads > 0).any()) else None, block_length=b,
    )
    clock = StepClock(device)
    runner = StepRunner(model, strategy, attention, canvas.key_valid, W, block=b)
    calls = _Calls(runner, strategy, clock, b)
    bar_iter = iter(progress(range(info.total_steps), show_progress, "denoising"))
    strategy.start(x, mask_id)
    with method_session(attention, info):
        if strategy.uses_kv and canvas.first_block > 0:
            calls.store(x, 0, canvas.first_block * b, 0, mask_id)
        for j in range(canvas.first_block, canvas.n_blocks):
            lo, hi = j * b, (j + 1) * b
            strategy.start_block(j, lo, hi, None)
            s = 0
            while s < per_block:
                masked = x[:, lo:hi] == mask_id
                if not bool(masked.any()):
                    break
                next(bar_iter, None)
                x = _denoise(calls, x, lo, hi, s, masked, counts[s], mask_id, temperature, top_k, top_p, remasking,
                             threshold, generator)
                s += 1
            if strategy.uses_kv:
                calls.store(x, lo, hi, s, mask_id)
            if stop_ids and _all_stopped(x, canvas, hi, stop_ids):
                break
    return GenerationOutput(sequences=unpack_sequences(canvas, x, prompt, fill), prompt_length=prompt.shape[1],
                            nfe=calls.count, step_times=clock.times, steps=runner.records,
                            cache_bytes=runner.cache_bytes)


def _denoise(calls: _Calls, x: torch.Tensor, lo: int, hi: int, s: int, masked: torch.Tensor, k: int, mask_id: int,
             temperature: float, top_k: int | None, top_p: float | None, remasking: str, threshold: float | None,
             generator: torch.Generator | None) -> torch.Tensor:
    """One denoising forward of the block [lo, hi) and its commits; returns the new canvas."""
    B, W = x.shape
    state = calls.state(x, lo, hi, s, mask_id)
    plan = calls.strategy.plan(state)
    with calls.clock.step():
        calls.runner.forward(x, plan, calls.where(state, plan, refresh=False))
        want = torch.zeros(B, W, dtype=torch.bool, device=x.device)
        want[:, lo:hi] = True
        logits = calls.runner.logits(want).view(B, hi - lo, -1)
        tokens, probs = rules.draw_tokens(logits, temperature, top_k, top_p, generator)
        conf = torch.where(masked, probs, torch.full_like(probs, -torch.inf))
        commit = torch.zeros_like(masked)
        for r in range(B):
            if bool(masked[r].any()):  # a row whose block is done waits for the others (commits nothing)
                commit[r] = (rules.commit_static(conf[r], k) if remasking == "low_confidence_static"
                             else rules.commit_dynamic(conf[r], k, threshold))
        new = x.clone()
        new[:, lo:hi] = torch.where(commit, tokens, x[:, lo:hi])
        calls.runner.committed(int((commit & masked).sum()))
        calls.strategy.observe(state, new, None)
    calls.count += 1
    return new


def _all_stopped(x: torch.Tensor, canvas: BlockCanvas, hi: int, stop_ids: Sequence[int]) -> bool:
    stops = torch.tensor(list(stop_ids), device=x.device)
    for r in range(x.shape[0]):
        region = x[r, int(canvas.gen_starts[r]) : min(hi, int(canvas.ends[r]))]
        if not bool(torch.isin(region, stops).any()):
            return False
    return True


def sample(model: DiffusionLM, input_ids: torch.Tensor, gen: Any, attention: AttentionMethod | None = None,  # noqa: ANN401
           cache: CacheStrategy | None = None, attention_mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None, show_progress: bool = False,
           steps: int | None = None) -> GenerationOutput:
    """The family entry point: ``gen`` is a GenConfig-like object; ``steps`` overrides ``gen.steps``."""
    return generate(
        model, input_ids, steps=int(steps or gen.steps), gen_length=gen.gen_length, block_length=gen.block_length,
        temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p, remasking=gen.remasking,
        threshold=gen.threshold, attention_mask=attention_mask, attention=attention, cache=cache,
        generator=generator, show_progress=show_progress,
    )
