"""Monte-Carlo log-likelihood of a continuation under a masked diffusion LM (LLaDA, Eq. 6 of its paper).

A masked diffusion LM gives no exact likelihood; LLaDA's evaluation uses the lower bound

    log p(r | p) >= E_{l ~ U{1..L}} [ L / l * sum_{i masked} log p_theta(r_i | p, r_l) ]

where ``r_l`` is the continuation with ``l`` of its ``L`` tokens masked uniformly at random (without
replacement) and the prompt ``p`` is never masked. Drawing ``l`` uniformly instead of a continuous
ratio t (with weight 1/t) gives a lower-variance estimate of the same bound. The ``mc_num`` draws of
``l`` are stratified (one per ``1/mc_num`` quantile, one random offset), which lowers the variance
further at no cost; the draws run ``batch_size`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sparsed.attention.base import AttentionMethod, GenerationInfo
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import method_session


def stratified_mask_counts(length: int, mc_num: int, generator: torch.Generator) -> torch.Tensor:
    """How many of ``length`` tokens each Monte-Carlo sample masks: one draw per quantile of U{1..L}."""
    offset = torch.rand((), generator=generator).item()
    counts = ((torch.arange(mc_num, dtype=torch.float64) + offset) / mc_num * length).ceil().long()
    return counts.clamp(1, length)


def random_masks(counts: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """[B, L] bool with exactly ``counts[b]`` True per row, positions uniform without replacement."""
    ranks = torch.rand((len(counts), length), generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


@torch.no_grad()
def mc_loglikelihood(
    model: DiffusionLM,
    prefix: list[int],
    target: list[int],
    *,
    mc_num: int = 128,
    batch_size: int = 32,
    generator: torch.Generator,
    attention: AttentionMethod | None = None,
    after_forward: Callable[[], None] | None = None,
) -> float:
    """Estimated log p(target | prefix) (natural log). ``generator`` (CPU) fixes every random draw."""
    if not target:
        return 0.0
    device = model.device
    P, L = len(prefix), len(target)
    seq = torch.tensor(prefix + target, dtype=torch.long)
    tgt = torch.tensor(target, dtype=torch.long, device=device)
    counts = stratified_mask_counts(L, mc_num, generator)
    total = 0.0
    for start in range(0, mc_num, batch_size):
        k = counts[start : start + batch_size]
        masked = random_masks(k, L, generator)
        x = seq.repeat(len(k), 1)
        x[:, P:][masked] = model.args.mask_token_id
        logits = _logits(model, x.to(device), P, L, attention, after_forward)
        logp = F.log_softmax(logits.float(), dim=-1).gather(-1, tgt.expand(len(k), L)[..., None])[..., 0]
        weight = (L / k.to(device=device, dtype=torch.float64))  # L / l: the bound's reweighting
        total += float(((logp.double() * masked.to(device)).sum(1) * weight).sum())
    return total / mc_num


@torch.no_grad()
def greedy_matches(
    model: DiffusionLM,
    prefix: list[int],
    target: list[int],
    attention: AttentionMethod | None = None,
    after_forward: Callable[[], None] | None = None,
) -> bool:
    """Whether the argmax of one forward with the whole continuation masked reproduces it.

    A cheap stand-in for "greedy decoding would produce the continuation" (LLaDA's own evaluation decodes
    the continuation one token per step instead); only tasks that report ``is_greedy`` use it.
    """
    if not target:
        return True
    P, L = len(prefix), len(target)
    x = torch.tensor([prefix + [model.args.mask_token_id] * L], dtype=torch.long, device=model.device)
    pred = _logits(model, x, P, L, attention, after_forward).argmax(-1)[0]
    return bool((pred.cpu() == torch.tensor(target)).all())


def _logits(
    model: DiffusionLM, x: torch.Tensor, P: int, L: int, attention: AttentionMethod | None,
    after_forward: Callable[[], None] | None,
) -> torch.Tensor:
    # One plain forward per batch: SparseD has no denoising schedule here and runs dense; fixed-pattern
    # methods (sliding window, StreamingLLM) apply their pattern as in generation.
    info = GenerationInfo(batch_size=x.shape[0], canvas_length=P + L, prompt_length=P, gen_length=L, total_steps=1)
    with method_session(attention, info):
        logits = model.token_logits(x, at=slice(P, P + L), attention=attention)
    if after_forward is not None:  # e.g. read the method's per-call stats before the next call resets them
        after_forward()
    return logits
