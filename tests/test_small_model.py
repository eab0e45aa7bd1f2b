"""The shipped small model (sparsed/assets/small-dlm) answers short needle-in-a-haystack questions."""

from __future__ import annotations

from sparsed.data.ruler import generate as ruler_generate
from sparsed.data.ruler import prompt_ids
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.models.loading import load_model
from sparsed.sampling.common import left_pad
from sparsed.sampling.llada import generate
from sparsed.tokenizer import load_tokenizer

MODEL = "sparsed/assets/small-dlm"


def test_dense_answers_20_short_niah_questions():
    model = load_model(MODEL, device="cpu", dtype="fp32")
    tok = load_tokenizer(MODEL)
    # evaluation seeds (training only draws seeds >= 1,000,000)
    samples = ruler_generate("niah_single_1", 768, tok, n=10, seed=7, gen_length=32, use_cache=False)
    samples += ruler_generate("niah_single_2", 768, tok, n=10, seed=7, gen_length=32, use_cache=False)
    ids, mask = left_pad([prompt_ids(tok, s["input"], s["answer_prefix"]) for s in samples], tok.pad_token_id)
    out = generate(model, ids, steps=16, gen_length=16, block_length=16, attention_mask=mask)
    preds = [tok.decode(row, skip_special_tokens=True) for row in out.generated]
    right = sum(string_match_all([p], [s["outputs"]]) == 100 for p, s in zip(preds, samples, strict=True))
    assert right >= 18, list(zip(preds, [s["outputs"] for s in samples], strict=True))
