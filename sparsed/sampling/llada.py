"""LLaDA's sampler: semi-autoregressive blocks, low-confidence or random remasking, optional CFG, and the
cache strategies and parallel-decoding rules of Fast-dLLM and dKV-Cache.

Follows LLaDA's ``generate``: the canvas is prompt + ``gen_length`` mask tokens, split into
``gen_length // block_length`` blocks that are denoised left to right with ``steps // n_blocks`` steps
each; at every step the masked positions of the current block with the highest confidence are committed
(the count per step spreads the block's masks evenly, remainder first). Temperature > 0 samples with
Gumbel-max in float64. Only the rows that predict positions up to the current block go through the LM
head (a position the model left masked in an earlier block stays eligible, as in the original).

With a cache strategy each step computes only the rows the strategy plans (the others come from the KV
cache); a step's scope is then the masked positions before the block end that the step computed, which
is what Fast-dLLM's and dKV-Cache's loops do (their cached forwards return logits for the fed rows only).
``threshold`` / ``factor`` switch to Fast-dLLM's parallel decoding: a block then runs until it has no mask
left (at most ``block_length`` steps; the original loops forever if the model keeps predicting the mask
token). ``remasking='random_fixed'`` is dKV-Cache-Greedy's order: one ``torch.rand`` draw over the canvas
per block fixes the whole commit order in advance.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.cache.base import CacheStrategy, StepState
from sparsed.cache.strategies.none import NoCache
from sparsed.config_errors import ConfigError
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling import commit as rules
from sparsed.sampling.common import (
    GenerationOutput,
    StepClock,
    StepRunner,
    check_block_schedule,
    make_canvas,
    method_session,
    pad_counts_of,
    progress,
    step_info,
)

REMASKING = ("low_confidence", "random", "random_fixed")


def check_llada_settings(gen_length: int, block_length: int | None, steps: int, remasking: str,
                         threshold: float | None = None, factor: float | None = None) -> None:
    check_block_schedule(gen_length, block_length, steps, unset="gen.block_length must be set for LLaDA (the "
                         "semi-autoregressive block; = gen_length for one block)")
    if remasking not in REMASKING:
        raise ConfigError(f"gen.remasking={remasking!r} is not allowed; choose one of: {', '.join(REMASKING)}")
    if threshold is not None and factor is not None:
        raise ConfigError("gen.threshold and gen.factor are two parallel-decoding rules; set one of them")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"gen.threshold={threshold} is outside [0, 1]")
    if factor is not None and factor <= 0:
        raise ConfigError(f"gen.factor={factor} must be > 0")
    if (threshold is not None or factor is not None) and remasking == "random_fixed":
        raise ConfigError("gen.remasking=random_fixed fixes the commit order in advance; it has no parallel decoding")


def check_gen(gen: Any) -> None:  # noqa: ANN401 - a GenConfig
    """gen.* for this sampler (called before anything loads); settings it ignores are rejected."""
    check_llada_settings(gen.gen_length, gen.block_length, gen.steps, gen.remasking, gen.threshold, gen.factor)
    if gen.temperature < 0:
        raise ConfigError(f"gen.temperature={gen.temperature} must be >= 0")
    if gen.cfg_scale < 0:
        raise ConfigError(f"gen.cfg_scale={gen.cfg_scale} must be >= 0 (0 = no classifier-free guidance)")
    for key in ("top_p", "top_k", "alg_temp"):
        if getattr(gen, key) is not None:
            raise ConfigError(f"gen.{key}={getattr(gen, key)} is a Dream sampler setting; LLaDA's sampler has none "
                              f"(set gen.{key}=null)")


def transfer_schedule(mask_count: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each step of a block: [B, steps], the remainder spread over the first steps."""
    base = mask_count // steps
    rem = mask_count % steps
    sched = base[:, None].expand(-1, steps).clone()
    sched += (torch.arange(steps, device=mask_count.device)[None, :] < rem[:, None]).long()
    return sched


def gumbel_max_scores(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    if temperature == 0:
        return logits
    logits = logits.double()
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    return logits.exp() / (-torch.log(u)) ** temperature


def fixed_order(batch: int, length: int, lo: int, hi: int, generator: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """dKV-Cache-Greedy's commit order of a block: positions of [lo, hi) by descending ``torch.rand`` draw.

    The draw covers the whole canvas row (as the original's ``torch.rand((B, L))``), so the random
    stream matches its default generator seeded the same way.
    """
    draw_on = generator.device if generator is not None else device
    r = torch.rand((batch, length), generator=generator, device=draw_on).to(device)
    r[:, :lo] = -torch.inf
    r[:, hi:] = -torch.inf
    return r.sort(dim=-1, descending=True).indices[:, : hi - lo]


@torch.no_grad()
def generate(
    model: DiffusionLM,
    prompt: torch.Tensor,
    *,
    steps: int = 128,
    gen_length: int = 128,
    block_length: int = 32,
    temperature: float = 0.0,
    cfg_scale: float = 0.0,
    remasking: str = "low_confidence",
    threshold: float | None = None,
    factor: float | None = None,
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    cache: CacheStrategy | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    """Generate ``gen_length`` tokens after ``prompt`` [B, P] (left-padded when ``attention_mask`` has zeros)."""
    check_llada_settings(gen_length, block_length, steps, remasking, threshold, factor)
    strategy = cache or NoCache()
    if cfg_scale > 0 and strategy.uses_kv:
        raise ConfigError(f"gen.cfg_scale>0 does not run with a KV cache (cache={strategy.name}); the cache "
                          "methods' code has no guidance path")
    mask_id = model.args.mask_token_id if mask_id is None else mask_id
    device = model.device
    B, P = prompt.shape
    L = P + gen_length
    x, full_mask = make_canvas(prompt, attention_mask, gen_length, mask_id, device)
    pads = pad_counts_of(attention_mask)
    real_prompt = torch.zeros_like(x, dtype=torch.bool)
    real_prompt[:, :P] = True if full_mask is None else full_mask[:, :P].bool()
    n_blocks = gen_length // block_length
    steps_per_block = steps // n_blocks
    parallel = threshold is not None or factor is not None
    cfg = cfg_scale > 0
    batch = 2 * B if cfg else B
    info = GenerationInfo(
        batch_size=batch, canvas_length=L, prompt_length=P, gen_length=gen_length, total_steps=steps,
        pad_counts=None if pads is None else (pads.repeat(2) if cfg else pads), block_length=block_length,
    )
    clock = StepClock(device)
    runner = StepRunner(model, strategy, attention, full_mask, L)
    pos = torch.arange(L, device=device)
    nfe = 0
    step = 0
    bar = progress(range(steps), show_progress, "denoising")
    bar_iter = iter(bar)
    strategy.start(x, mask_id)
    with method_session(attention, info):
        for b in range(n_blocks):
            lo, hi = P + b * block_length, P + (b + 1) * block_length
            sched = transfer_schedule((x[:, lo:hi] == mask_id).sum(-1), steps_per_block)
            order = fixed_order(B, L, lo, hi, generator, device) if remasking == "random_fixed" else None
            done_at = torch.zeros(B, dtype=torch.long, device=device)
            if order is not None:
                done_at = torch.cat([done_at[:, None], sched.cumsum(-1)], dim=-1)  # [B, steps+1] offsets into order
            strategy.start_block(b, lo, hi, None if order is None else _order_ranks(order, B, L, device))
            i = 0
            while True:
                if step < steps:
                    next(bar_iter, None)
                state = StepState(step=step, block=b, step_in_block=i, lo=lo, hi=hi, x=x, mask_id=mask_id)
                plan = strategy.plan(state)
                where = step_info(strategy, plan, step=step, block=b, lo=lo, hi=hi, step_in_block=i, length=L)
                with clock.step():
                    masked = x == mask_id
                    if cfg:
                        logits, want = _cfg_logits(model, x, real_prompt, mask_id, full_mask, attention, cfg_scale, P,
                                                   hi, masked, where)
                        runner.records.append(_full_record(L))
                        nfe += 2
                    else:
                        runner.forward(x, plan, where)
                        want = masked & (pos < hi)[None] & runner.computed(x)
                        logits = runner.logits(want)
                        nfe += 1
                    scores = gumbel_max_scores(logits, temperature, generator)
                    x0_sel = scores.argmax(-1)
                    conf = torch.full(x.shape, -torch.inf, dtype=torch.float64, device=device)
                    if remasking == "low_confidence":
                        p = torch.softmax(logits.double(), dim=-1)
                        conf[want] = p.gather(-1, x0_sel[:, None]).squeeze(-1)
                    elif remasking == "random":  # LLaDA draws one number per canvas position
                        r = torch.rand((B, L), device=device, generator=generator).double()
                        conf[want] = r[want]
                    x0 = x.clone()
                    x0[want] = x0_sel
                    if order is not None:
                        commit = torch.zeros_like(masked)
                        if i < steps_per_block:
                            for r in range(B):
                                commit[r, order[r, done_at[r, i] : done_at[r, i + 1]]] = True
                        x0 = torch.where(want, x0, torch.where(masked, mask_id, x))
                    elif threshold is not None:
                        commit = rules.threshold(conf, want, threshold)
                    elif factor is not None:
                        commit = rules.factor(conf, want, factor)
                    else:
                        commit = rules.schedule(conf, sched[:, i]) if i < steps_per_block else torch.zeros_like(masked)
                    new_x = torch.where(commit, x0, x)
                    runner.committed(int((commit & masked).sum()))
                    upcoming = None
                    if order is not None and i + 1 < steps_per_block:
                        upcoming = torch.zeros_like(masked)
                        for r in range(B):
                            upcoming[r, order[r, done_at[r, i + 1] : done_at[r, i + 2]]] = True
                    strategy.observe(state, new_x, upcoming)
                    x = new_x
                i += 1
                step += 1
                if _block_finished(x, lo, hi, mask_id, i, steps_per_block, block_length, parallel, plan.full,
                                   strategy):
                    break
    return GenerationOutput(sequences=x, prompt_length=P, nfe=nfe, step_times=clock.times, steps=runner.records,
                            cache_bytes=runner.cache_bytes)


def _block_finished(x: torch.Tensor, lo: int, hi: int, mask_id: int, i: int, steps_per_block: int, block_length: int,
                    parallel: bool, last_was_full: bool, strategy: CacheStrategy) -> bool:
    if not parallel:
        return i >= steps_per_block
    if i >= block_length + 1:
        return True
    empty = not bool((x[:, lo:hi] == mask_id).any())
    if empty and i == 1 and last_was_full and strategy.extra_step_after_refresh:
        return False  # Fast-dLLM's cached loop starts with a forward before it checks the block
    return empty


def _order_ranks(order: torch.Tensor, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """[B, L] rank of each position in the commit order (-1 outside the block)."""
    ranks = torch.full((batch, length), -1, dtype=torch.long, device=device)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=device)[None].expand(batch, -1))
    return ranks


def _full_record(length: int):  # noqa: ANN202
    from sparsed.sampling.common import StepRecord

    return StepRecord("full", length)


def _cfg_logits(model, x, real_prompt, mask_id, full_mask, attention, cfg_scale, P, hi, masked, where):  # noqa: ANN001, ANN202
    """Classifier-free guidance: conditional and prompt-masked passes in one batch (no cache)."""
    if attention is not None:
        attention.set_step(where.step, where)
    uncond = x.clone()
    uncond[real_prompt] = mask_id
    am = None if full_mask is None else full_mask.repeat(2, 1)
    both = model.token_logits(torch.cat([x, uncond]), slice(P, hi), attention, am)
    cond, unc = both.chunk(2)
    guided = unc + (cfg_scale + 1) * (cond - unc)  # [B, hi-P, V]
    want = masked.clone()
    want[:, :P] = False
    want[:, hi:] = False
    return guided[want[:, P:hi]], want


def sample(model: DiffusionLM, input_ids: torch.Tensor, gen: Any, attention: AttentionMethod | None = None,  # noqa: ANN401
           cache: CacheStrategy | None = None, attention_mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None, show_progress: bool = False,
           steps: int | None = None) -> GenerationOutput:
    """The family entry point: ``gen`` is a GenConfig-like object; ``steps`` overrides ``gen.steps``."""
    return generate(
        model, input_ids, steps=int(steps or gen.steps), gen_length=gen.gen_length, block_length=gen.block_length,
        temperature=gen.temperature, cfg_scale=gen.cfg_scale, remasking=gen.remasking, threshold=gen.threshold,
        factor=gen.factor, attention_mask=attention_mask, attention=attention, cache=cache, generator=generator,
        show_progress=show_progress,
    )
