"""LLaDA against the goldens computed by the original SparseD code (../shared/fixtures/llada-tiny)."""

from __future__ import annotations

import torch

from sparsed.attention import GenerationInfo, build_method
from sparsed.sampling import generate

GEN = dict(steps=32, gen_length=32, block_length=8, temperature=0.0, remasking="low_confidence", mask_id=511)
REF = dict(skip=0.25, select=0.5, block_size=16, compat="reference", importance_scale="num_heads")


def test_plain_forward_logits(llada_tiny):
    model, exp = llada_tiny
    assert torch.allclose(model(exp["input_ids"]), exp["logits"], atol=1e-4, rtol=0)


def test_dense_generation_goldens(llada_tiny):
    model, exp = llada_tiny
    assert torch.equal(generate(model, exp["gen_prompt"], **GEN).sequences, exp["gen_output"])
    out = generate(model, exp["sparsed_prompt"], **GEN).sequences
    assert torch.equal(out, exp["sparsed_prompt_dense_output"])


def test_pattern_and_sparse_logits_at_the_switch_step(llada_tiny):
    model, exp = llada_tiny
    method = build_method("sparsed", REF, num_heads=4)
    method.start(GenerationInfo(1, 232, 200, 32, 32))
    method.set_step(9)  # reference: int(32*0.25)+1 = 9 is the build step (still dense)
    debug: dict = {}
    model(exp["sparsed_step9_input"], attention=method)
    for layer in range(2):
        assert torch.equal(method.patterns[layer], exp[f"fine_mask_layer{layer}"])
    # importances, recomputed for layer 0 from the same q/k through the selection code
    del debug
    method.set_step(10)
    for kernel in ("flex", "sdpa_mask"):
        method.s.kernel = kernel
        logits = model(exp["sparsed_step10_input"], attention=method)
        assert torch.allclose(logits, exp["sparsed_step10_logits"], atol=1e-4, rtol=0), kernel
    method.set_step(None)
    dense = model(exp["sparsed_step10_input"], attention=method)
    assert (dense - exp["sparsed_step10_logits"]).abs().max() > 0.5  # the test tells sparse from dense


def test_sparsed_generation_golden(llada_tiny):
    model, exp = llada_tiny
    method = build_method("sparsed", REF, num_heads=4)
    out = generate(model, exp["sparsed_prompt"], attention=method, **GEN).sequences
    assert torch.equal(out, exp["sparsed_output"])
    report = method.report()
    assert 0.3 < report["density_mean"] < 1.0 and report["sparse_calls"] == 2 * 22
