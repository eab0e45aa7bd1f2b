"""The shipped small model (sparsed/assets/small-dlm) answers short RULER questions, and the sliding
window (a bad sparse method for retrieval) visibly does not."""

from __future__ import annotations

import pytest

from sparsed.attention import build_method
from sparsed.data.ruler import generate as ruler_generate
from sparsed.data.ruler import prompt_ids
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.models.loading import load_model
from sparsed.sampling.common import left_pad
from sparsed.sampling.llada import generate
from sparsed.tokenizer import load_tokenizer

MODEL = "sparsed/assets/small-dlm"


@pytest.fixture(scope="module")
def small():
    return load_model(MODEL, device="cpu", dtype="fp32"), load_tokenizer(MODEL)


def answers_right(model, tok, samples: list[dict], gen: int, attention=None) -> tuple[int, list[str]]:  # noqa: ANN001
    """(how many answers contain all their gold strings, the answers)"""
    ids, mask = left_pad([prompt_ids(tok, s["input"], s["answer_prefix"]) for s in samples], tok.pad_token_id)
    out = generate(model, ids, steps=gen, gen_length=gen, block_length=gen, attention_mask=mask, attention=attention)
    preds = [tok.decode(row, skip_special_tokens=True) for row in out.generated]
    return sum(string_match_all([p], [s["outputs"]]) == 100 for p, s in zip(preds, samples, strict=True)), preds


def test_dense_answers_20_short_niah_questions(small):
    model, tok = small
    # evaluation seeds (training only draws seeds >= 1,000,000)
    # tight: questions of the full 768 tokens (RULER's fill would cut the essay ones to a fraction)
    samples = ruler_generate("niah_single_1", 768, tok, n=10, seed=7, gen_length=32, use_cache=False, fill="tight")
    samples += ruler_generate("niah_single_2", 768, tok, n=10, seed=7, gen_length=32, use_cache=False, fill="tight")
    right, preds = answers_right(model, tok, samples, 16)
    assert right >= 18, list(zip(preds, [s["outputs"] for s in samples], strict=True))


def test_multikey_retrieval_and_the_sliding_window_gap(small):
    """Multi-key retrieval among word-keyed needles (the last skill the model learnt, in its third stage);
    a window of a quarter of the prompt cannot reach the needle and loses most of them."""
    model, tok = small
    mk = ruler_generate("niah_multikey_2", 512, tok, n=8, seed=11, gen_length=16, use_cache=False, fill="tight")
    assert answers_right(model, tok, mk, 16)[0] >= 7
    assert answers_right(model, tok, mk, 16, attention=build_method("sliding_window", {"ws": 128}))[0] <= 3
