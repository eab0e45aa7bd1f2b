"""The shipped small model (sparsed/assets/small-dlm) answers short needle-in-a-haystack questions."""

from __future__ import annotations

import torch

from sparsed.data.ruler import generate as ruler_generate
from sparsed.data.ruler import render_prompt
from sparsed.eval.ruler_metrics import string_match_all
from sparsed.models.loading import load_model
from sparsed.sampling.llada import generate
from sparsed.tokenizer import load_tokenizer

MODEL = "sparsed/assets/small-dlm"


def test_dense_answers_20_short_niah_questions():
    model = load_model(MODEL, device="cpu", dtype="fp32")
    tok = load_tokenizer(MODEL)
    # evaluation seeds (training only draws seeds >= 1,000,000)
    samples = ruler_generate("niah_single_1", 768, tok, n=10, seed=7, gen_length=32, use_cache=False)
    samples += ruler_generate("niah_single_2", 768, tok, n=10, seed=7, gen_length=32, use_cache=False)
    seqs = []
    for s in samples:
        r = render_prompt(tok, s["input"], s["answer_prefix"], True)
        seqs.append(tok(r.text, add_special_tokens=r.add_special_tokens)["input_ids"])
    width = max(map(len, seqs))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in seqs])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in seqs])
    out = generate(model, ids, steps=16, gen_length=16, block_length=16, attention_mask=mask)
    preds = [tok.decode(row, skip_special_tokens=True) for row in out.generated]
    right = sum(string_match_all([p], [s["outputs"]]) == 100 for p, s in zip(preds, samples, strict=True))
    assert right >= 18, list(zip(preds, [s["outputs"] for s in samples], strict=True))
