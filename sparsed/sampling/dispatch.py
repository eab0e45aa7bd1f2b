"""One call for every model family: the sampler that belongs to the model's family (``models.registry``)."""

from __future__ import annotations

from typing import Any

import torch

from sparsed.attention.base import AttentionMethod
from sparsed.cache.base import CacheStrategy
from sparsed.models.registry import FAMILIES
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import GenerationOutput


def sample(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    gen: Any,  # noqa: ANN401 - a GenConfig-like object
    attention: AttentionMethod | None = None,
    attention_mask: torch.Tensor | None = None,
    show_progress: bool = False,
    steps: int | None = None,
    cache: CacheStrategy | None = None,
) -> GenerationOutput:
    """Generate with the settings in ``gen``; ``steps`` overrides gen.steps (a short warm-up run)."""
    g = torch.Generator(device=model.device).manual_seed(int(gen.seed))
    return FAMILIES[model.args.arch].sample(
        model, input_ids, gen, attention=attention, cache=cache, attention_mask=attention_mask, generator=g,
        show_progress=show_progress, steps=steps,
    )


def warmup_steps(gen: Any) -> int:  # noqa: ANN401
    """A short schedule with the same canvas that still reaches sparse steps (compiles every kernel)."""
    n_blocks = gen.gen_length // gen.block_length if getattr(gen, "block_length", None) else 1
    per_block = max(1, -(-8 // n_blocks))
    return min(int(gen.steps), n_blocks * per_block)
