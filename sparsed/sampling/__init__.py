"""Samplers of the model families (LLaDA, Dream, SDAR), each behind its family's ``sample`` call."""

from sparsed.sampling.common import GenerationOutput
from sparsed.sampling.dream import diffusion_generate
from sparsed.sampling.llada import generate

__all__ = ["GenerationOutput", "diffusion_generate", "generate"]
