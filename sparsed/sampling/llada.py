"""LLaDA's sampler: semi-autoregressive blocks, low-confidence or random remasking, optional CFG.

Follows LLaDA's ``generate``: the canvas is prompt + ``gen_length`` mask tokens, split into
``gen_length // block_length`` blocks that are denoised left to right with ``steps // n_blocks`` steps
each; at every step the masked positions of the current block with the highest confidence are committed
(the count per step spreads the block's masks evenly, remainder first). Temperature > 0 samples with
Gumbel-max in float64. Only the generated region up to the current block goes through the LM head (a position the model
left masked in an earlier block stays eligible, as in the original).
"""

from __future__ import annotations

import torch

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.config_errors import ConfigError
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import (
    GenerationOutput,
    StepClock,
    make_canvas,
    method_session,
    pad_counts_of,
    progress,
)

REMASKING = ("low_confidence", "random")


def check_llada_settings(gen_length: int, block_length: int, steps: int, remasking: str) -> None:
    if gen_length <= 0 or block_length <= 0 or steps <= 0:
        raise ConfigError(f"gen_length={gen_length}, block_length={block_length}, steps={steps} must all be > 0")
    if gen_length % block_length:
        raise ConfigError(f"gen.gen_length={gen_length} is not divisible by gen.block_length={block_length}")
    n_blocks = gen_length // block_length
    if steps % n_blocks:
        raise ConfigError(
            f"gen.steps={steps} is not divisible by the number of blocks ({n_blocks} = gen_length/block_length)"
        )
    if remasking not in REMASKING:
        raise ConfigError(f"gen.remasking={remasking!r} is not allowed; choose one of: {', '.join(REMASKING)}")


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
    mask_id: int | None = None,
    attention_mask: torch.Tensor | None = None,
    attention: AttentionMethod | None = None,
    generator: torch.Generator | None = None,
    show_progress: bool = False,
) -> GenerationOutput:
    """Generate ``gen_length`` tokens after ``prompt`` [B, P] (left-padded when ``attention_mask`` has zeros)."""
    check_llada_settings(gen_length, block_length, steps, remasking)
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
    cfg = cfg_scale > 0
    batch = 2 * B if cfg else B
    info = GenerationInfo(
        batch_size=batch, canvas_length=L, prompt_length=P, gen_length=gen_length, total_steps=steps,
        pad_counts=None if pads is None else (pads.repeat(2) if cfg else pads),
    )
    clock = StepClock(device)
    nfe = 0
    bar = progress(range(steps), show_progress, "denoising")
    bar_iter = iter(bar)
    with method_session(attention, info):
        for b in range(n_blocks):
            lo, hi = P + b * block_length, P + (b + 1) * block_length
            sched = transfer_schedule((x[:, lo:hi] == mask_id).sum(-1), steps_per_block)
            for i in range(steps_per_block):
                next(bar_iter, None)
                with clock.step():
                    if attention is not None:
                        attention.set_step(b * steps_per_block + i)
                    masked = x == mask_id
                    if cfg:
                        uncond = x.clone()
                        uncond[real_prompt] = mask_id
                        am = None if full_mask is None else full_mask.repeat(2, 1)
                        both = model.token_logits(torch.cat([x, uncond]), slice(P, hi), attention, am)
                        cond, unc = both.chunk(2)
                        logits = unc + (cfg_scale + 1) * (cond - unc)
                        nfe += 2
                    else:
                        logits = model.token_logits(x, slice(P, hi), attention, full_mask)
                        nfe += 1
                    x0 = gumbel_max_scores(logits, temperature, generator).argmax(-1)
                    if remasking == "low_confidence":
                        probs = torch.softmax(logits.double(), dim=-1)
                        conf = probs.gather(-1, x0[..., None]).squeeze(-1)
                    else:
                        conf = torch.rand(x0.shape, dtype=torch.float64, device=device, generator=generator)
                    blk_masked = masked[:, P:hi]
                    conf = torch.where(blk_masked, conf, torch.tensor(-torch.inf, dtype=conf.dtype, device=device))
                    commit = torch.zeros_like(blk_masked)
                    for r in range(B):
                        n = int(sched[r, i])
                        if n:
                            commit[r, conf[r].topk(n).indices] = True
                    x[:, P:hi] = torch.where(commit, x0, x[:, P:hi])
    return GenerationOutput(sequences=x, prompt_length=P, nfe=nfe, step_times=clock.times)
