"""Dream's samplers: ``diffusion_generate`` (the released one) and ``block_generate`` (Fast-dLLM's blockwise loop).

``diffusion_generate`` denoises the whole generation as one block. ``origin`` unmasks each masked token
with probability 1 - s/t; ``maskgit_plus`` / ``topk_margin`` / ``entropy`` commit the
``int(n_masked * (1 - s/t))`` most confident predictions (all on the last step), with confidence =
probability of the sampled token / top1-top2 margin / negative entropy of the top-p/top-k-filtered
distribution (top_k defaults to 50, as the reference inherits it). ``confidence_threshold`` is Fast-dLLM's
parallel decoding on this loop: each step commits its share ``n_masked // steps`` plus what earlier steps
held back, the most confident always and the others only at or above ``threshold``; what the last step
holds back extends the loop by one step per token. The dKV-Cache strategies (prefill, decode, pd) run on
this loop. Dream's logits are shifted by one: position p is predicted by canvas row p - 1.

``block_generate`` is Fast-dLLM's ``generation_utils_block`` (its prefix and dual caches run on it):
blocks of ``block_length`` left to right; a block starts with a full forward that commits the block's
first position with its argmax (whatever the rule), then cached steps over the block. Its quirks, kept:
any ``alg`` other than ``confidence_threshold`` scores with negative entropy; the schedule
``linspace(1, eps, steps_per_block + 1)`` starts at its second entry; a block that still holds a mask
after ``steps_per_block`` forwards is left so (one forward wasted); cached steps shift the logits inside
the computed slice, so the slice's first position is predicted by its own row.
"""

from __future__ import annotations

from typing import Any

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.cache.base import CacheStrategy, StepState
from sparsed.cache.strategies.none import NoCache
from sparsed.config_errors import ConfigError
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import (
    GenerationOutput,
    StepClock,
    StepRunner,
    make_canvas,
    method_session,
    pad_counts_of,
    progress,
    step_info,
)

ALGORITHMS = ("origin", "maskgit_plus", "topk_margin", "entropy", "confidence_threshold")


def check_dream_settings(gen_length: int, steps: int, alg: str, top_p: float | None, top_k: int | None,
                         threshold: float | None = None, block_length: int | None = None) -> None:
    if gen_length <= 0 or steps <= 0:
        raise ConfigError(f"gen.gen_length={gen_length} and gen.steps={steps} must be > 0")
    if alg not in ALGORITHMS:
        raise ConfigError(f"gen.alg={alg!r} is not allowed; choose one of: {', '.join(ALGORITHMS)}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ConfigError(f"gen.top_p={top_p} is outside (0, 1]")
    if top_k is not None and top_k <= 0:
        raise ConfigError(f"gen.top_k={top_k} must be a positive integer")
    if alg == "confidence_threshold" and threshold is None:
        raise ConfigError("gen.alg=confidence_threshold needs gen.threshold (Fast-dLLM uses 0.9)")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"gen.threshold={threshold} is outside [0, 1]")
    if block_length is not None:
        if block_length <= 0 or gen_length % block_length:
            raise ConfigError(f"gen.gen_length={gen_length} is not divisible by gen.block_length={block_length}")
        n_blocks = gen_length // block_length
        if steps % n_blocks:
            raise ConfigError(f"gen.steps={steps} is not divisible by the number of blocks ({n_blocks})")
    elif alg == "confidence_threshold" and gen_length % steps:
        raise ConfigError(f"gen.alg=confidence_threshold needs gen.gen_length={gen_length} divisible by "
                          f"gen.steps={steps} (its per-step share; Fast-dLLM asserts the same)")


def check_gen(gen: Any) -> None:  # noqa: ANN401 - a GenConfig
    check_dream_settings(gen.gen_length, gen.steps, gen.alg, gen.top_p, gen.top_k, gen.threshold, gen.block_length)
    if gen.temperature < 0:
        raise ConfigError(f"gen.temperature={gen.temperature} must be >= 0")
    if gen.threshold is not None and gen.alg != "confidence_threshold":
        raise ConfigError(f"gen.threshold is used by gen.alg=confidence_threshold only (gen.alg={gen.alg})")
    if gen.factor is not None:
        raise ConfigError("gen.factor is a LLaDA sampler setting (Fast-dLLM's factor rule); Dream's has none")
    if gen.cfg_scale:
        raise ConfigError(f"gen.cfg_scale={gen.cfg_scale}: Dream's sampler has no classifier-free guidance")
    if gen.remasking != "low_confidence":
        raise ConfigError(f"gen.remasking={gen.remasking} is a LLaDA sampler setting; Dream's is gen.alg")


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest prefix of sorted tokens whose mass exceeds ``top_p`` (the first always stays)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    drop = cum > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    mask = torch.zeros_like(drop).scatter_(-1, order, drop)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def top_k_filter(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    k = min(top_k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_p: float | None,
    top_k: int | None,
    confidence: str,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence, token) for each row of ``logits`` [N, V]."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    probs = logits.softmax(-1)
    if temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        conf = probs.gather(-1, tokens[:, None]).squeeze(-1)
    else:
        conf, tokens = probs.max(-1)
    if confidence == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        conf = top2[:, 0] - top2[:, 1]
    elif confidence == "entropy":
        conf = (probs * torch.log(probs + 1e-10)).sum(-1)
    return conf, tokens


def _commit_top(x: torch.Tensor, masked: torch.Tensor, conf: torch.Tensor, tokens: torch.Tensor, n: int,
                alg_temp: float | None, generator: torch.Generator | None, mask_id: int) -> torch.Tensor:
    """Commit the ``n`` most confident masked positions of each row (or sample them with ``alg_temp``)."""
    full_conf = torch.full(x.shape, -torch.inf, dtype=conf.dtype, device=x.device)
    full_conf[masked] = conf
    if not alg_temp:
        pick = full_conf.topk(n, dim=-1).indices
    else:
        pick = torch.multinomial(torch.softmax(full_conf / alg_temp, dim=-1), n, generator=generator)
    cand = torch.full_like(x, mask_id)
    cand[masked] = tokens
    rows = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(pick)
    out = x.clone()
    out[rows, pick] = cand[rows, pick]
    return out


@torch.no_grad()
def diffusion_generate(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int = 128,
    steps: int = 128,
    temperature: float = 0.0,
    top_p: float | None = None,
    # Reference quirk, kept on purpose: Dream's `diffusion_generate` builds its generation config with
    # `DreamGenerationConfig.from_model_config(model.config)`, and under transformers 4.46 every
    # `PretrainedConfig` carries the legacy generation defaults, `top_k=50` among them. So a call that does
    # not pass `top_k` still truncates to the 50 most likely tokens (after top-p), which changes the
    # renormalised confidences even at temperature 0. Pass `top_k=None` to turn it off, as in the reference.
    top_k: int | None = 50,
    alg: str = "maskgit_plus",
    alg_temp: float | None = None,
    threshold: float | None = None,
    eps: float = 1e-3,
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    cache: CacheStrategy | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    check_dream_settings(max_new_tokens, steps, alg, top_p, top_k, threshold)
    strategy = cache or NoCache()
    mask_id = model.args.mask_token_id if mask_id is None else mask_id
    device = model.device
    B, P = input_ids.shape
    L = P + max_new_tokens
    x, full_mask = make_canvas(input_ids, attention_mask, max_new_tokens, mask_id, device)
    info = GenerationInfo(batch_size=B, canvas_length=L, prompt_length=P, gen_length=max_new_tokens,
                          total_steps=steps, pad_counts=pad_counts_of(attention_mask))
    timesteps = torch.linspace(1, eps, steps + 1, device=device)
    clock = StepClock(device)
    runner = StepRunner(model, strategy, attention, full_mask, L)
    # confidence_threshold: a fixed share per step plus what was held back, per row (rows may run longer)
    share = torch.full((B,), max_new_tokens // steps, dtype=torch.long)
    held = torch.zeros(B, dtype=torch.long)
    row_steps = torch.full((B,), steps, dtype=torch.long)
    strategy.start(x, mask_id)
    strategy.start_block(0, P, L, None)
    i = 0
    bar = iter(progress(range(steps), show_progress, "denoising"))
    with method_session(attention, info):
        while i < int(row_steps.max()):
            next(bar, None)
            state = StepState(step=i, block=0, step_in_block=i, lo=P, hi=L, x=x, mask_id=mask_id)
            plan = strategy.plan(state)
            where = step_info(strategy, plan, step=i, block=0, lo=P, hi=L, step_in_block=i, length=L)
            with clock.step():
                runner.forward(x, plan, where)
                masked = x == mask_id
                mask_logits = runner.logits(masked)
                before = masked
                if alg == "origin":
                    t, s = timesteps[i], timesteps[i + 1]
                    p_transfer = 1 - s / t if i < steps - 1 else 1
                    x0 = torch.full((int(masked.sum()),), mask_id, dtype=torch.long, device=device)
                    u = torch.rand(x0.shape, device=device, generator=generator)
                    move = u < p_transfer
                    if bool(move.any()):
                        _, x0[move] = sample_tokens(mask_logits[move], temperature, top_p, top_k, "prob", generator)
                    new_x = x.clone()
                    new_x[masked] = x0
                elif alg == "confidence_threshold":
                    conf, x0 = sample_tokens(mask_logits, temperature, top_p, top_k, "prob", generator)
                    new_x, share, held, row_steps = _threshold_step(x, masked, conf, x0, share, held, row_steps, i,
                                                                    threshold, mask_id)
                else:
                    t, s = timesteps[i], timesteps[i + 1]
                    conf, x0 = sample_tokens(mask_logits, temperature, top_p, top_k, alg, generator)
                    n_masked = masked.sum() / masked.shape[0]
                    n = int(n_masked * (1 - s / t)) if i < steps - 1 else int(n_masked)
                    new_x = _commit_top(x, masked, conf, x0, n, alg_temp, generator, mask_id) if n > 0 else x
                runner.committed(int((before & (new_x != mask_id)).sum()))
                strategy.observe(state, new_x, None)
                x = new_x
            i += 1
    return GenerationOutput(sequences=x, prompt_length=P, nfe=i, step_times=clock.times, steps=runner.records,
                            cache_bytes=runner.cache_bytes)


def _threshold_step(x, masked, conf, x0, share, held, row_steps, i, threshold, mask_id):  # noqa: ANN001, ANN202
    """One step of Fast-dLLM's ``confidence_threshold`` on the plain Dream loop, row by row.

    Each row commits ``share[r] + held[r]`` candidates: the most confident always, the others only at
    or above ``threshold``; the rest are held for the next step. Holding back at a row's last step
    zeroes its share and extends its loop by one step per held token (as the original does).
    """
    full_conf = torch.full(x.shape, -torch.inf, dtype=conf.dtype, device=x.device)
    full_conf[masked] = conf
    cand = torch.full_like(x, mask_id)
    cand[masked] = x0
    out = x.clone()
    share, held, row_steps = share.clone(), held.clone(), row_steps.clone()
    for r in range(x.shape[0]):
        if i >= int(row_steps[r]):
            continue
        quota = min(int(share[r] + held[r]), int(masked[r].sum()))
        held[r] = 0
        if quota == 0:
            continue
        vals, idx = full_conf[r].topk(quota)
        keep = torch.ones(quota, dtype=torch.bool, device=x.device)
        last = i == int(row_steps[r]) - 1
        for j in range(1, quota):
            if float(vals[j]) < threshold:
                keep[j] = False
                held[r] += 1
                if last:
                    share[r] = 0
                    row_steps[r] += 1
        out[r, idx[keep]] = cand[r, idx[keep]]
    return out, share, held, row_steps


@torch.no_grad()
def block_generate(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int = 128,
    steps: int = 128,
    block_length: int = 32,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = 50,  # the same inherited top-50 filter as diffusion_generate (see there)
    alg: str = "entropy",
    alg_temp: float | None = None,
    threshold: float | None = None,
    eps: float = 1e-3,
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    cache: CacheStrategy | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    """Fast-dLLM's blockwise Dream loop (see the module docstring); ``cache`` is usually prefix or dual."""
    check_dream_settings(max_new_tokens, steps, alg, top_p, top_k, threshold, block_length)
    strategy = cache or NoCache()
    mask_id = model.args.mask_token_id if mask_id is None else mask_id
    device = model.device
    B, P = input_ids.shape
    L = P + max_new_tokens
    x, full_mask = make_canvas(input_ids, attention_mask, max_new_tokens, mask_id, device)
    n_blocks = max_new_tokens // block_length
    per_block = steps // n_blocks
    info = GenerationInfo(batch_size=B, canvas_length=L, prompt_length=P, gen_length=max_new_tokens,
                          total_steps=steps, pad_counts=pad_counts_of(attention_mask), block_length=block_length)
    timesteps = torch.linspace(1, eps, per_block + 1, device=device)
    clock = StepClock(device)
    runner = StepRunner(model, strategy, attention, full_mask, L)
    pos = torch.arange(L, device=device)
    bar = iter(progress(range(steps), show_progress, "denoising"))
    step = 0
    strategy.start(x, mask_id)
    with method_session(attention, info):
        for b in range(n_blocks):
            lo, hi = P + b * block_length, P + (b + 1) * block_length
            strategy.start_block(b, lo, hi, None)
            in_block = ((pos >= lo) & (pos < hi))[None]
            i = 0
            while True:
                next(bar, None)
                state = StepState(step=step, block=b, step_in_block=i, lo=lo, hi=hi, x=x, mask_id=mask_id)
                plan = strategy.plan(state)
                where = step_info(strategy, plan, step=step, block=b, lo=lo, hi=hi, step_in_block=i, length=L)
                with clock.step():
                    runner.forward(x, plan, where)
                    step += 1
                    masked = x == mask_id
                    if i == 0:  # the block's first forward commits its first position, whatever the rule
                        want = torch.zeros_like(masked)
                        want[:, lo] = True
                        _, tok = sample_tokens(runner.logits(want), temperature, top_p, top_k, "prob", generator)
                        new_x = x.clone()
                        new_x[:, lo] = tok
                    else:
                        own = lo if not plan.full else None
                        want = masked & in_block
                        if alg != "confidence_threshold" and i == per_block:
                            runner.committed(0)
                            break  # the released loop's step cap sits after the forward (a wasted forward)
                        logits = runner.logits(want, own_row_at=own)
                        if alg == "confidence_threshold":
                            conf, tok = sample_tokens(logits, temperature, top_p, top_k, "prob", generator)
                            new_x = _block_threshold(x, want, conf, tok, threshold, mask_id)
                        else:
                            t, s = timesteps[i], timesteps[i + 1]
                            conf, tok = sample_tokens(logits, temperature, top_p, top_k, "entropy", generator)
                            n_masked = want.sum() / want.shape[0]
                            n = int(n_masked * (1 - s / t)) if i < per_block - 1 else int(n_masked)
                            new_x = _commit_top(x, want, conf, tok, n, alg_temp, generator, mask_id) if n > 0 else x
                    runner.committed(int((masked & (new_x != mask_id)).sum()))
                    strategy.observe(state, new_x, None)
                    x = new_x
                i += 1
                if i > 1 and not bool((x[:, lo:hi] == mask_id).any()):
                    break
                if i > block_length + 1:  # the released threshold loop never gives up on a mask-predicting model
                    break
    return GenerationOutput(sequences=x, prompt_length=P, nfe=step, step_times=clock.times, steps=runner.records,
                            cache_bytes=runner.cache_bytes)


def _block_threshold(x, want, conf, tok, threshold, mask_id):  # noqa: ANN001, ANN202
    """Fast-dLLM's Dream threshold step: the most confident position of the block, and all at or above it."""
    full_conf = torch.full(x.shape, -torch.inf, dtype=conf.dtype, device=x.device)
    full_conf[want] = conf
    cand = torch.full_like(x, mask_id)
    cand[want] = tok
    commit = want & (full_conf >= threshold)
    for r in range(x.shape[0]):
        if bool(want[r].any()):
            commit[r, int(full_conf[r].argmax())] = True
    return torch.where(commit, cand, x)


def uses_blocks(gen: Any, strategy: CacheStrategy | None) -> bool:  # noqa: ANN401
    """Dream decodes block by block when a block length is set or the cache strategy works per block."""
    return gen.block_length is not None or bool(strategy is not None and strategy.blockwise)


def sample(model: DiffusionLM, input_ids: torch.Tensor, gen: Any, attention: AttentionMethod | None = None,  # noqa: ANN401
           cache: CacheStrategy | None = None, attention_mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None, show_progress: bool = False,
           steps: int | None = None) -> GenerationOutput:
    """The family entry point: the released loop, or Fast-dLLM's blockwise one (see ``uses_blocks``)."""
    steps = int(steps or gen.steps)
    common = dict(max_new_tokens=gen.gen_length, steps=steps, temperature=gen.temperature, top_p=gen.top_p,
                  top_k=gen.top_k, alg=gen.alg, alg_temp=gen.alg_temp, threshold=gen.threshold,
                  attention_mask=attention_mask, attention=attention, cache=cache, generator=generator,
                  show_progress=show_progress)
    if uses_blocks(gen, cache):
        return block_generate(model, input_ids, block_length=gen.block_length or gen.gen_length, **common)
    return diffusion_generate(model, input_ids, **common)
