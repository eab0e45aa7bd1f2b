"""One call for both model families: picks the sampler that belongs to the model's architecture."""

from __future__ import annotations

from typing import Any

import torch

from sparsed.attention.base import AttentionMethod
from sparsed.models.transformer import DiffusionLM
from sparsed.sampling.common import GenerationOutput
from sparsed.sampling.dream import diffusion_generate
from sparsed.sampling.llada import generate


def sample(
    model: DiffusionLM,
    input_ids: torch.Tensor,
    gen: Any,
    attention: AttentionMethod | None = None,
    attention_mask: torch.Tensor | None = None,
    show_progress: bool = False,
    steps: int | None = None,
) -> GenerationOutput:
    """Generate with the settings in ``gen`` (a ``GenConfig``-like object); ``steps`` overrides gen.steps."""
    g = torch.Generator(device=model.device).manual_seed(int(gen.seed))
    steps = int(steps or gen.steps)
    if model.args.arch == "llada":
        return generate(
            model, input_ids, steps=steps, gen_length=gen.gen_length, block_length=gen.block_length,
            temperature=gen.temperature, cfg_scale=gen.cfg_scale, remasking=gen.remasking,
            attention_mask=attention_mask, attention=attention, generator=g, show_progress=show_progress,
        )
    return diffusion_generate(
        model, input_ids, max_new_tokens=gen.gen_length, steps=steps, temperature=gen.temperature,
        top_p=gen.top_p, top_k=gen.top_k, alg=gen.alg, alg_temp=gen.alg_temp, attention_mask=attention_mask,
        attention=attention, generator=g, show_progress=show_progress,
    )


def warmup_steps(gen: Any) -> int:
    """A short schedule with the same canvas that still reaches sparse steps (compiles every kernel)."""
    n_blocks = gen.gen_length // gen.block_length if hasattr(gen, "block_length") and gen.block_length else 1
    per_block = max(1, -(-8 // n_blocks))
    return min(int(gen.steps), n_blocks * per_block)
