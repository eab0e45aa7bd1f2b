"""Observation 2 of the paper, in numbers: how similar a head's attention is across denoising steps.

* ``step_cosine``: the step x step cosine similarity of a head's flattened block-pooled maps (the maps are
  non-negative, so it lies in [0, 1]; 1 = the same map up to scale). The paper's v1 leaves its metric
  undefined; this is ours.
* ``jaccard``: the Jaccard similarity |A & B| / |A | B| of two block selections (every query block's kept
  key blocks, as SparseD builds them), per head. The ICLR version compares the selection of the step
  SparseD builds its pattern at with the selection every later step would make, and reports > 90 % on
  average over heads; ``jaccard_vs_build`` is that number per (layer, head).
"""

from __future__ import annotations

import numpy as np
import torch


def step_cosine(maps: np.ndarray) -> np.ndarray:
    """[steps, steps] cosine similarity of one head's maps ``maps`` [steps, nq, nk] (rows absent anywhere dropped)."""
    ok = np.isfinite(maps).all(-1).all(0)  # query blocks present at every step
    flat = maps[:, ok].reshape(maps.shape[0], -1).astype(np.float64)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.where(norm > 0, norm, 1.0)
    return unit @ unit.T


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-head Jaccard similarity of two bool grids [..., H, nq, nk] -> [..., H] (1 when both are empty)."""
    inter = (a & b).flatten(-2).sum(-1).float()
    union = (a | b).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def jaccard_vs_build(grids: dict[tuple[int, int], torch.Tensor], build: int, steps: int, layers: int,
                     row: int = 0) -> np.ndarray:
    """[later steps, layers, heads]: Jaccard of each later step's selection with the build step's."""
    out = [[jaccard(grids[(build, la)][row], grids[(t, la)][row]).numpy() for la in range(layers)]
           for t in range(build + 1, steps)]
    return np.array(out)


def jaccard_matrix(grids: dict[tuple[int, int], torch.Tensor], layer: int, head: int, steps: int,
                   row: int = 0) -> np.ndarray:
    """[steps, steps] Jaccard similarity of one head's selections at every pair of steps."""
    g = torch.stack([grids[(t, layer)][row, head] for t in range(steps)])  # [steps, nq, nk]
    inter = (g[:, None] & g[None]).flatten(-2).sum(-1).float()
    union = (g[:, None] | g[None]).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).numpy()
