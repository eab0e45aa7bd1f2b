"""Dream against the goldens computed by the original SparseD code (../shared/fixtures/dream-tiny)."""

from __future__ import annotations

import pytest
import torch

from sparsed.attention import GenerationInfo, build_method
from sparsed.sampling import diffusion_generate

GEN = dict(max_new_tokens=32, steps=32, temperature=0.0, top_p=0.95, alg_temp=0.0)
REF = dict(skip=0.25, select=0.5, block_size=16, compat="reference")


def test_plain_forward_logits(dream_tiny):
    model, exp = dream_tiny
    assert torch.allclose(model(exp["input_ids"]), exp["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("prompt", "alg", "golden"),
    [
        ("gen_prompt", "maskgit_plus", "gen_output"),
        ("gen_prompt", "entropy", "gen_output_entropy"),
        ("sparsed_prompt", "maskgit_plus", "sparsed_prompt_dense_output"),
    ],
)
def test_dense_generation_goldens(dream_tiny, prompt, alg, golden):
    model, exp = dream_tiny
    out = diffusion_generate(model, exp[prompt], alg=alg, **GEN).sequences
    assert torch.equal(out, exp[golden])


def test_hidden_top_k_default_matters(dream_tiny):
    """The reference filters to the top 50 tokens by default; turning that off changes the output."""
    model, exp = dream_tiny
    out = diffusion_generate(model, exp["gen_prompt"], alg="maskgit_plus", **GEN, top_k=None).sequences
    assert not torch.equal(out, exp["gen_output"])


def test_pattern_and_sparse_logits_at_the_switch_step(dream_tiny):
    model, exp = dream_tiny
    method = build_method("sparsed", REF)
    method.start(GenerationInfo(1, 232, 200, 32, 32))
    method.set_step(9)
    model(exp["sparsed_step9_input"], attention=method)
    for layer in range(2):
        assert torch.equal(method.patterns[layer], exp[f"fine_mask_layer{layer}"])
    method.set_step(10)
    for kernel in ("flex", "sdpa_mask"):
        method.s.kernel = kernel
        logits = model(exp["sparsed_step10_input"], attention=method)
        assert torch.allclose(logits, exp["sparsed_step10_logits"], atol=1e-4, rtol=0), kernel


def test_sparsed_generation_golden(dream_tiny):
    model, exp = dream_tiny
    method = build_method("sparsed", REF)
    out = diffusion_generate(model, exp["sparsed_prompt"], alg="maskgit_plus", attention=method, **GEN).sequences
    assert torch.equal(out, exp["sparsed_output"])
