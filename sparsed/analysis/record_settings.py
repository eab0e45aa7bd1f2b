"""The ``record.*`` node of a run: which attention probabilities the recorder keeps (see ``recorder``).

Kept apart from the recorder so that the run schema (``sparsed.config``) types the node without
importing anything heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sparsed.config_errors import ConfigError

RECORD_DTYPES = ("float16", "float32")


@dataclass
class RecordSettings:
    attention: bool = False  # switch the recorder on (off: the run's method is not wrapped at all)
    layers: list[int] | None = None  # layers to record; None = every layer
    heads: list[int] | None = None  # query heads to record; None = every head
    steps: list[int] | None = None  # denoising steps (negative counts from the end); None = every step
    block_size: int = 64  # tokens per pooling tile, on both axes
    full_maps: list[list[int]] = field(default_factory=list)  # [layer, head] pairs whose full map is kept ...
    full_max_tokens: int = 1024  # ... when the canvas has at most this many tokens
    full_steps: list[int] | None = None  # the steps with full maps (negative from the end); None = every recorded step
    dtype: str = "float16"  # stored precision of the probabilities
    max_gib: float = 1.0  # a run whose record would be larger is refused before its first step
    file: str = "attention_record.safetensors"  # written beside result.json

    def validate(self) -> None:
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ConfigError(f"record.block_size={self.block_size} must be a positive number of tokens")
        for name in ("layers", "heads"):
            values = getattr(self, name)
            if values is not None and (not values or any(not isinstance(v, int) or v < 0 for v in values)):
                raise ConfigError(f"record.{name}={values} must be null (all) or a non-empty list of indices >= 0")
        if self.steps is not None and (not self.steps or any(not isinstance(s, int) for s in self.steps)):
            raise ConfigError(f"record.steps={self.steps} must be null (every step) or a non-empty list of step indices")
        for pair in self.full_maps:
            if len(pair) != 2 or any(not isinstance(v, int) or v < 0 for v in pair):
                raise ConfigError(f"record.full_maps entry {list(pair)} must be [layer, head]")
        if self.full_steps is not None and any(not isinstance(v, int) for v in self.full_steps):
            raise ConfigError(f"record.full_steps={self.full_steps} must be null or a list of step indices")
        if not isinstance(self.full_max_tokens, int) or self.full_max_tokens < 1:
            raise ConfigError(f"record.full_max_tokens={self.full_max_tokens} must be a positive number of tokens")
        if self.dtype not in RECORD_DTYPES:
            raise ConfigError(f"record.dtype={self.dtype!r} is not allowed; choose one of: {', '.join(RECORD_DTYPES)}")
        if not self.max_gib > 0:
            raise ConfigError(f"record.max_gib={self.max_gib} must be > 0")
        if not self.file or "/" in self.file:
            raise ConfigError(f"record.file={self.file!r} must be a file name (it is written beside result.json)")

    def resolved_steps(self, total_steps: int) -> list[int]:
        """The recorded steps of a ``total_steps`` generation, negative ones counted from the end."""
        return _resolve(self.steps, total_steps)

    def resolved_full_steps(self, total_steps: int) -> list[int]:
        """The recorded steps that also keep full maps."""
        steps = self.resolved_steps(total_steps)
        return steps if self.full_steps is None else [s for s in _resolve(self.full_steps, total_steps) if s in steps]

    def expected_bytes(self, *, batch: int, canvas: int, total_steps: int, n_layers: int, n_heads: int) -> int:
        """Size of the record of one generation (full-canvas calls; cached calls are smaller)."""
        item = 2 if self.dtype == "float16" else 4
        nb = math.ceil(canvas / self.block_size)
        steps = len(self.resolved_steps(total_steps))
        layers = n_layers if self.layers is None else len(self.layers)
        heads = n_heads if self.heads is None else len(self.heads)
        pooled = steps * layers * batch * heads * nb * nb * item
        n_full = len(self.resolved_full_steps(total_steps))
        full = n_full * len(self.full_maps) * batch * canvas * canvas * item if canvas <= self.full_max_tokens else 0
        return pooled + full


def _resolve(steps: list[int] | None, total_steps: int) -> list[int]:
    if steps is None:
        return list(range(total_steps))
    return sorted({s % total_steps for s in steps if -total_steps <= s < total_steps})
