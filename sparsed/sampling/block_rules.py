"""What one denoising step of SDAR's block sampler decides: the token at each position, and which to commit.

* ``draw_tokens``: the candidate token and its probability at every position of the block. At
  temperature 0 the argmax and its softmax probability over the full vocabulary (the released
  ``sample_with_temperature_topk_topp`` cannot run at 0, it divides by it; SDAR/TraDo forks use this
  greedy rule, and so do the goldens). Otherwise as the released function: divide by the temperature
  (unless 1), keep the top-k logits (ties at the k-th kept), keep the top-p nucleus (the first token
  always), softmax, one ``torch.multinomial`` draw per position over all rows at once; the probability
  is read from the filtered distribution.
* ``transfer_counts``: tokens to commit at each step of a block, ``block_length // steps`` plus one for
  the first ``block_length % steps`` steps, always from the full block length (also for the first,
  partly-prompt block).
* ``commit_static`` / ``commit_dynamic``: ``low_confidence_static`` commits the ``k`` most confident
  masked positions; ``low_confidence_dynamic`` commits every masked position whose confidence is above
  the threshold (strictly) when there are at least ``k`` of them, else falls back to the static rule.

Quirk kept from the released code: the static choice is ``torch.topk`` over the whole block with the
unmasked positions at ``-inf``; when ``k`` exceeds the masks left, ``topk`` also returns unmasked
positions and those are overwritten with the step's candidate token (which may differ from the
committed one, and may hit prompt tokens in the first block). Which ``-inf`` positions win is torch's
CPU ``topk`` tie-breaking on the same 1-D tensors, so it is reproduced by calling it the same way.
It needs ``k > 1``, i.e. fewer steps than the block length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REMASKING = ("low_confidence_static", "low_confidence_dynamic")


def top_k_logits(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, -torch.inf)


def top_p_logits(logits: torch.Tensor, p: float) -> torch.Tensor:
    ordered, order = logits.sort(dim=-1, descending=True)
    beyond = F.softmax(ordered, dim=-1).cumsum(-1) > p
    # a token stays when the mass before it is <= p: shift right by one, the most likely always stays
    beyond = torch.cat([torch.zeros_like(beyond[..., :1]), beyond[..., :-1]], dim=-1)
    drop = torch.zeros_like(beyond).scatter(-1, order, beyond)
    return logits.masked_fill(drop, -torch.inf)


def draw_tokens(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, probabilities) [..., ] for ``logits`` [..., V] (see the module docstring)."""
    shape, vocab = logits.shape[:-1], logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    if temperature == 0:
        tokens = flat.argmax(-1, keepdim=True)
        probs = F.softmax(flat, dim=-1)
    else:
        if temperature != 1.0:
            flat = flat / temperature
        if top_k:
            flat = top_k_logits(flat, top_k)
        if top_p is not None and top_p < 1.0:
            flat = top_p_logits(flat, top_p)
        probs = F.softmax(flat, dim=-1)
        draw_on = generator.device if generator is not None else probs.device
        tokens = torch.multinomial(probs.to(draw_on), 1, generator=generator).to(probs.device)
    return tokens.view(shape), probs.gather(-1, tokens).view(shape)


def transfer_counts(block_length: int, steps: int) -> list[int]:
    base, extra = divmod(block_length, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def commit_static(conf: torch.Tensor, k: int) -> torch.Tensor:
    """bool [b]: the ``k`` best of one row's block confidences ``conf`` [b] (unmasked at -inf)."""
    out = torch.zeros_like(conf, dtype=torch.bool)
    if k > 0:
        out[torch.topk(conf, k).indices] = True
    return out


def commit_dynamic(conf: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    high = conf > threshold
    if int(high.sum()) >= k:
        return high
    return commit_static(conf, k)
