"""SDAR's block-diffusion training objective (JetAstra/SDAR ``modeling_sdar.py``, training branch).

The noise is the masked-diffusion one of ``loss.mask_answers``: one ratio ``t ~ U(eps, 1)`` per
sequence and every answer token masked with probability ``t`` (SDAR's ``forward_add_noise_packed``;
the prompt is kept, except on the trainer's ``full`` rows). What differs is how the model sees it: the
noisy sequence and the clean one are fed as one sequence ``[x_t ; x_0]`` of length 2L, both halves at
positions 0..L-1, under the block-diffusion mask of blocks of ``block`` tokens:

* a noisy token sees the noisy tokens of its own block (bidirectional) and the clean tokens of the
  blocks before it;
* a clean token sees the clean tokens of its own and earlier blocks (block-causal, as at inference).

So every noisy block is denoised from a clean prefix, exactly the conditional the block sampler uses
(``test_training`` checks it against the inference forward), all blocks in one pass. The loss is the
cross-entropy of the masked tokens (the logit at i predicts token i), each divided by its row's ``t``,
summed over the batch and divided by the batch's answer tokens (SDAR divides by ``(labels != -100).sum()``,
the whole batch's, not per sequence as LLaDA's SFT loss does). SDAR redraws ``t`` until at least one
token is masked; here such a row simply adds nothing (exact zero, as in ``loss.sft_loss``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sparsed.models.transformer import DiffusionLM
from sparsed.training.loss import LossOutput, Noised


def block_diffusion_mask(length: int, block: int, device: torch.device | None = None) -> torch.Tensor:
    """bool [1, 1, 2L, 2L] (True = may attend) over ``[x_t ; x_0]`` (see the module docstring)."""
    blocks = torch.arange(length, device=device) // block
    qb, kb = blocks[:, None], blocks[None, :]
    same, before, up_to = qb == kb, kb < qb, kb <= qb
    no = torch.zeros_like(same)
    top = torch.cat([same, before], dim=1)  # noisy queries: own noisy block, earlier clean blocks
    bottom = torch.cat([no, up_to], dim=1)  # clean queries: clean blocks up to their own
    return torch.cat([top, bottom], dim=0)[None, None]


def block_diffusion_loss(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    noised: Noised,
    block: int,
    hidden_states: Callable[..., torch.Tensor] | None = None,
) -> LossOutput:
    """The loss for clean ``input_ids`` [B, L] and their ``noised`` version; only masked rows reach the LM head."""
    B, L = input_ids.shape
    dev = input_ids.device
    both = torch.cat([noised.input_ids, input_ids], dim=1)
    pos = torch.arange(L, device=dev)
    positions = torch.cat([pos, pos])[None].expand(B, -1)
    mask = block_diffusion_mask(L, block, dev)
    hidden = (hidden_states or model.hidden_states)(both, None, mask, positions)[:, :L]
    rows = noised.masked.nonzero(as_tuple=True)
    logits = model.head(hidden[rows]).float()
    target = input_ids[rows]
    ce = F.cross_entropy(logits, target, reduction="none")
    loss = (ce / noised.t[rows[0]]).sum() / noised.norm.sum()
    hits = logits.detach().argmax(-1) == target
    return LossOutput(loss, torch.tensor(target.numel(), device=dev), hits.sum(), rows[0], target, hits)
