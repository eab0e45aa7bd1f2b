"""Which masked positions a denoising step commits: the fixed schedule and Fast-dLLM's parallel rules.

All rules take per-row confidences ``conf`` [B, L] (``-inf`` outside the step's scope) and return a
bool [B, L] of the positions to commit.

* ``schedule``: the ``n[b]`` most confident positions (LLaDA's fixed count per step). When ``n[b]``
  exceeds the positions in scope, ``topk`` also returns out-of-scope ones; their candidate token is
  the current one, so committing them changes nothing (as in LLaDA's code).
* ``threshold`` (Fast-dLLM ``get_transfer_index``): the most confident position always, and every other
  one whose confidence is not below the threshold.
* ``factor`` (Fast-dLLM's factor rule, added to its LLaDA code after the release the goldens come
  from): sort the scope's confidences c_1 >= c_2 >= ...; commit the first n whose confidences pass
  1 - f/(j+1) for every j <= n (the first always passes). Quirk kept from that code: when the first
  failure is at the last candidate, it is committed too (its ``top_i == len - 1`` branch adds one).
"""

from __future__ import annotations

import torch


def schedule(conf: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(conf, dtype=torch.bool)
    for r in range(conf.shape[0]):
        k = int(n[r])
        if k:
            out[r, conf[r].topk(k).indices] = True
    return out


def threshold(conf: torch.Tensor, scope: torch.Tensor, thr: float) -> torch.Tensor:
    out = scope & (conf >= thr)
    for r in range(conf.shape[0]):
        if bool(scope[r].any()):
            out[r, int(conf[r].argmax())] = True
    return out


def factor(conf: torch.Tensor, scope: torch.Tensor, f: float) -> torch.Tensor:
    out = torch.zeros_like(conf, dtype=torch.bool)
    for r in range(conf.shape[0]):
        m = int(scope[r].sum())
        if m == 0:
            continue
        c = conf[r][scope[r]].sort(descending=True).values
        # candidate j (0-based) passes when c_j >= 1 - f / (j + 2); the first always passes
        need = 1.0 - f / torch.arange(2, m + 2, dtype=c.dtype, device=c.device)
        need[0] = -1.0
        fails = (c < need).nonzero()
        n = m if len(fails) == 0 else int(fails[0])
        if n == 0 or n == m - 1:  # the released code's adjustment (see the module docstring)
            n += 1
        out[r, conf[r].topk(min(n, m)).indices] = True
    return out
