"""LLaDA's SFT objective: keep the prompt, mask the answer at a random ratio, predict the masks.

For each sample a ratio ``t ~ U(eps, 1)`` is drawn and every answer token (the EOS padding included) is
replaced by the mask token independently with probability ``t``; the prompt is never masked. The loss
is the cross-entropy on the masked tokens, each weighted by ``1/t`` (the ELBO weight of the masked
diffusion process), summed per sample, divided by that sample's answer length, and averaged over the
batch. This is the estimator of LLaDA's SFT loss (paper, Eq. 5 and its appendix), written here from
the formula.

Optionally (``full``) some rows get LLaDA's *pretraining* objective instead: the whole sequence, prompt
included, is masked at ratio t and the sum is divided by the sequence length. The small model has no
pretraining of its own; masked prompts give it a dense signal for copying within the context (a
masked piece of the question's key can only be recovered from its needle), the circuit that retrieval
needs, where the SFT answers alone give a few dozen tokens per example.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sparsed.models.transformer import DiffusionLM


@dataclass
class Noised:
    input_ids: torch.Tensor  # [B, L] with answer tokens replaced by the mask token
    masked: torch.Tensor  # bool [B, L]: positions that carry the loss
    t: torch.Tensor  # float [B]: each sample's mask ratio
    norm: torch.Tensor  # float [B]: each sample's loss normaliser (answer length, or L for full rows)


def answer_region(prompt_lengths: torch.Tensor, length: int) -> torch.Tensor:
    """bool [B, L]: True at answer positions (position >= the sample's prompt length)."""
    pos = torch.arange(length, device=prompt_lengths.device)
    return pos[None, :] >= prompt_lengths[:, None]


def mask_answers(
    input_ids: torch.Tensor,
    prompt_lengths: torch.Tensor,
    mask_id: int,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    full: torch.Tensor | None = None,
) -> Noised:
    """Forward diffusion on the answer region (and on the whole sequence of rows where ``full``).

    ``generator`` must live on ``input_ids``' device; the draws are made there so that a seeded run
    gives the same masks on every call.
    """
    B, L = input_ids.shape
    dev = input_ids.device
    u = torch.rand(B, device=dev, generator=generator)
    t = eps + (1.0 - eps) * u  # eps > 0 keeps the 1/t weight finite
    region = answer_region(prompt_lengths.to(dev), L)
    norm = (L - prompt_lengths.to(dev)).clamp(min=1).float()
    if full is not None:
        full = full.to(dev).bool()
        region = region | full[:, None]
        norm = torch.where(full, torch.full_like(norm, float(L)), norm)
    draws = torch.rand(B, L, device=dev, generator=generator)
    masked = (draws < t[:, None]) & region
    noisy = torch.where(masked, torch.full_like(input_ids, mask_id), input_ids)
    return Noised(noisy, masked, t, norm)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, differentiable
    n_masked: torch.Tensor  # int scalar: masked tokens in the batch
    n_correct: torch.Tensor  # int scalar: of those, how many the argmax gets right (a progress signal)
    rows: torch.Tensor  # long [n_masked]: the sample each masked token belongs to
    targets: torch.Tensor  # long [n_masked]: the clean token at each masked position
    hits: torch.Tensor  # bool [n_masked]: whether the argmax got it right (per-task accuracy in the log)


def sft_loss(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    noised: Noised,
    hidden_states: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LossOutput:
    """The loss (see the module docstring) for clean ``input_ids`` and their ``noised`` version.

    Only masked rows go through the LM head: answers are a few dozen tokens of prompts up to 4k, so
    the full [B, L, V] logits would be almost all waste. ``hidden_states`` replaces
    ``model.hidden_states`` (a ``torch.compile``d version, say). Counts stay on the device.
    """
    B = input_ids.shape[0]
    hidden = (hidden_states or model.hidden_states)(noised.input_ids)
    rows = noised.masked.nonzero(as_tuple=True)
    logits = model.head(hidden[rows]).float()
    target = input_ids[rows]
    ce = F.cross_entropy(logits, target, reduction="none")
    weight = 1.0 / (noised.t[rows[0]] * noised.norm[rows[0]])
    # With no masked token at all (tiny t on short answers) this is an exact zero that still backprops.
    loss = (ce * weight).sum() / B
    hits = logits.detach().argmax(-1) == target
    return LossOutput(loss, torch.tensor(target.numel(), device=input_ids.device), hits.sum(), rows[0], target, hits)
