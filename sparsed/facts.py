"""What attention methods and cache strategies may know about the model they serve: facts, not identity.

A method never branches on which model it runs in; where the released code of a method made a
model-dependent choice (SparseD's importance scale, dKV-Cache's step schedule), the method resolves it
from these facts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFacts:
    arch: str = "unknown"  # the family name of the checkpoint (llada, dream, sdar), for released-code quirks
    n_heads: int | None = None
    n_kv_heads: int | None = None
    head_dim: int | None = None
    n_layers: int | None = None
    logit_shift: int = 0  # the output at canvas row p predicts the token at p + logit_shift (Dream: 1)
    block_causal: bool = False  # block diffusion: causal across blocks, bidirectional inside one
