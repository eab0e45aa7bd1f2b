"""The shipped block-diffusion model (sparsed/assets/small-bd: SDAR layout, FP8 weights) answers short
single-needle questions through its exact block cache, with dense attention and with LoSA / Quest loading
part of the cached prefix."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from sparsed.attention import build_method
from sparsed.cache import build_cache
from sparsed.data.ruler import generate as ruler_generate
from sparsed.data.ruler import prompt_ids
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.models.loading import load_model
from sparsed.sampling.common import left_pad
from sparsed.sampling.dispatch import sample
from sparsed.tokenizer import load_tokenizer

MODEL = "sparsed/assets/small-bd"


@pytest.fixture(scope="module")
def small_bd():
    return load_model(MODEL, device="cpu", dtype="fp32"), load_tokenizer(MODEL)


@pytest.fixture(scope="module")
def needles(small_bd):
    _, tok = small_bd
    # evaluation seeds (training draws seeds >= 1,000,000); tight: the whole 768 tokens
    samples = ruler_generate("niah_single_1", 768, tok, n=8, seed=7, gen_length=32, use_cache=False, fill="tight")
    return samples + ruler_generate("niah_single_2", 768, tok, n=8, seed=7, gen_length=32, use_cache=False,
                                    fill="tight")


def answers_right(model, tok, samples, attention=None) -> tuple[int, list[str], object]:  # noqa: ANN001
    ids, mask = left_pad([prompt_ids(tok, s["input"], s["answer_prefix"]) for s in samples], tok.pad_token_id)
    gen = SimpleNamespace(gen_length=16, steps=16, block_length=16, remasking="low_confidence_static",
                          threshold=None, temperature=0.0, top_k=None, top_p=None, seed=0)
    cache = build_cache("block_prefix", {}, model.args.facts)
    out = sample(model, ids, gen, attention, attention_mask=mask, cache=cache)
    preds = [tok.decode(row, skip_special_tokens=True) for row in out.generated]
    right = sum(string_match_all([p], [s["outputs"]]) == 100 for p, s in zip(preds, samples, strict=True))
    return right, preds, out


def test_the_shipped_checkpoint_is_the_block_diffusion_fp8_one(small_bd):
    model, _ = small_bd
    cfg = json.loads((Path(MODEL) / "config.json").read_text())
    assert cfg["model_type"] == "sdar" and cfg["quantization_config"]["quant_method"] == "fp8"
    assert model.args.arch == "sdar" and model.args.block_causal and model.args.n_kv_heads == 2


def test_dense_cached_answers_short_single_needles(small_bd, needles):
    model, tok = small_bd
    right, preds, out = answers_right(model, tok, needles)
    assert right >= 15, list(zip(preds, [s["outputs"] for s in needles], strict=True))
    assert out.step_summary()["cached"] > 0  # the block cache served the steps


@pytest.mark.parametrize("method", ["losa", "quest"])
def test_sparse_prefix_methods_still_retrieve_from_a_fifth_to_a_quarter_of_the_prefix(small_bd, needles, method):
    model, tok = small_bd
    attention = build_method(method, {"budget": 64}, facts=model.args.facts)
    right, preds, _ = answers_right(model, tok, needles, attention)
    assert right >= 14, preds
    assert attention.report()["kv_density"] < 0.35  # measured: LoSA 0.21, Quest 0.28 (16 of 16 right)


def test_dense_cached_answers_multi_key_needles(small_bd):
    """The skill training stage 2 added (RULER MK2 98 at 2k): the needle whose key the question names,
    among needles with other keys."""
    model, tok = small_bd
    samples = ruler_generate("niah_multikey_2", 768, tok, n=16, seed=7, gen_length=32, use_cache=False, fill="tight")
    right, preds, _ = answers_right(model, tok, samples)
    assert right >= 14, list(zip(preds, [s["outputs"] for s in samples], strict=True))  # measured: 16 of 16
