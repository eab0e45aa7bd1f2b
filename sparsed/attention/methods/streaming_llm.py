"""StreamingLLM baseline: attention sinks (the first keys) plus a bidirectional sliding window."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sparsed.attention.base import MethodSettings
from sparsed.attention.masked import FixedPatternMethod, MaskMod
from sparsed.attention.methods.sliding_window import window_density
from sparsed.attention.registry import MethodSpec
from sparsed.config_errors import ConfigError
from sparsed.facts import ModelFacts


@dataclass
class StreamingLLMSettings(MethodSettings):
    ws: int = 2048  # window width in tokens (ws//2 each side)
    sink_ratio: float = 0.1  # sinks = this fraction of the sequence length (the paper: 10 %)
    sinks: int = 0  # a fixed number of sink tokens; overrides sink_ratio when > 0

    def validate(self) -> None:
        if not isinstance(self.ws, int) or self.ws <= 0:
            raise ConfigError(f"streaming_llm.ws={self.ws} must be a positive number of tokens")
        if not 0.0 <= self.sink_ratio < 1.0:
            raise ConfigError(f"streaming_llm.sink_ratio={self.sink_ratio} is outside [0, 1)")
        if not isinstance(self.sinks, int) or self.sinks < 0:
            raise ConfigError(f"streaming_llm.sinks={self.sinks} must be an integer >= 0")


class StreamingLLM(FixedPatternMethod):
    name = "streaming_llm"

    def __init__(self, settings: StreamingLLMSettings, facts: ModelFacts | None = None) -> None:
        super().__init__()
        settings.validate()
        self.s = settings

    def n_sinks(self, length: int) -> int:
        return self.s.sinks if self.s.sinks > 0 else int(length * self.s.sink_ratio)

    def mask_mod(self, length: int, valid_len: torch.Tensor | None = None) -> MaskMod:
        half = self.s.ws // 2
        if valid_len is None:
            n = self.n_sinks(length)

            def mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - flex's signature
                return ((q_idx - kv_idx).abs() <= half) | (kv_idx < n)

            return mask_mod
        # each row's sinks are a fraction of its own length, not of the padded canvas
        sinks = torch.tensor([self.n_sinks(int(n)) for n in valid_len.tolist()], device=valid_len.device)

        def padded_mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202
            return ((q_idx - kv_idx).abs() <= half) | (kv_idx < sinks[b])

        return padded_mask_mod

    def density(self, length: int) -> float:
        half, sinks = self.s.ws // 2, min(self.n_sinks(length), length)
        # sink columns that lie left of each query's window
        i = torch.arange(length)
        extra = torch.clamp(torch.minimum(i - half, torch.tensor(sinks)), min=0).sum().item()
        return window_density(length, half) + extra / (length * length)


METHOD = MethodSpec("streaming_llm", StreamingLLMSettings, StreamingLLM, "attention sinks plus a bidirectional window")
