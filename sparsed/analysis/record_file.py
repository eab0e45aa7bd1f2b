"""Reading an attention record (``attention_record.safetensors``, written by ``recorder.AttentionRecorder``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class AttentionRecord:
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str | Path) -> AttentionRecord:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = json.loads(f.metadata()["sparsed_record"])
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iterator
        return cls(meta, arrays)

    @property
    def steps(self) -> list[int]:
        return list(self.meta["steps"])

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def heads(self) -> list[int]:
        return list(self.meta["heads"])

    def pooled(self, step: int, layer: int) -> np.ndarray:
        """float32 [B, H, nq, nk] block-pooled probabilities (H = the recorded heads, in ``heads`` order)."""
        return self.arrays[f"pooled.s{step}.l{layer}"].astype(np.float32)

    def full(self, step: int, layer: int, head: int) -> np.ndarray:
        """float32 [B, Lq, Lk] full map of one head (recorded only for short canvases)."""
        return self.arrays[f"full.s{step}.l{layer}.h{head}"].astype(np.float32)

    def has_full(self, step: int, layer: int, head: int) -> bool:
        return f"full.s{step}.l{layer}.h{head}" in self.arrays

    def stack(self, layer: int, row: int = 0) -> np.ndarray:
        """float32 [steps, H, nq, nk]: one layer's pooled maps over the recorded steps (one batch row)."""
        return np.stack([self.pooled(s, layer)[row] for s in self.steps])
