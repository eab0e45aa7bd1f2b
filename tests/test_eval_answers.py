"""MMLU answer-letter extraction and the small text helpers of the lm-eval model."""

from __future__ import annotations

import pytest

from sparsed.config import GenConfig
from sparsed.eval.answers import extract_choice, mmlu_process_results
from sparsed.eval.lm_eval_model import cut_at_stops, fit_gen

CHOICES = ["London", "Berlin", "Rome", "Paris"]


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("D", "D"),
        (" D", "D"),
        ("D. Paris", "D"),
        ("D) Paris", "D"),
        ("(D)", "D"),
        ("(D) Paris", "D"),
        ("**D**", "D"),
        ("The answer is D", "D"),
        ("The answer is (D).", "D"),
        ("Answer: C", "C"),
        ("answer: (B)", "B"),
        ("The correct answer is: B.", "B"),
        ("I think the right option is C because", "C"),
        ("It must be (A), since", "A"),
        ("\nB\n\nQuestion", "B"),
        ("Paris", "D"),  # the text of a choice without its letter
        ("berlin.", "B"),
        ("the answer is a city", None),  # a lowercase "a" is a word, not a letter
        ("", None),
        ("no idea", None),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text, CHOICES) == letter


def test_mmlu_process_results_scores_the_extracted_letter():
    doc = {"question": "Capital of France?", "choices": CHOICES, "answer": 3}
    assert mmlu_process_results(doc, ["The answer is D"]) == {"acc": 1.0}
    assert mmlu_process_results(doc, ["(B)"]) == {"acc": 0.0}
    assert mmlu_process_results(doc, ["???"]) == {"acc": 0.0}


def test_cut_at_stops_takes_the_earliest_stop():
    assert cut_at_stops("18\n\nQuestion: next", ["Question:", "\n\n"]) == "18"
    assert cut_at_stops("no stop here", ["Question:"]) == "no stop here"
    assert cut_at_stops("x", []) == "x"


def test_fit_gen_keeps_llada_block_rules_and_steps_per_token():
    g = GenConfig(gen_length=256, steps=256, block_length=32)
    assert fit_gen(g, "llada", 256) is g
    short = fit_gen(g, "llada", 8)  # shorter than a block: the block shrinks to the length
    assert (short.gen_length, short.block_length, short.steps) == (8, 8, 8)
    odd = fit_gen(g, "llada", 100)  # rounded up to whole blocks, steps a multiple of the block count
    assert (odd.gen_length, odd.block_length, odd.steps) == (128, 32, 100)
    assert odd.gen_length % odd.block_length == 0 and odd.steps % (odd.gen_length // odd.block_length) == 0
    dream = fit_gen(GenConfig(gen_length=128, steps=64, block_length=None), "dream", 100)  # no blocks: exact
    assert (dream.gen_length, dream.steps) == (100, 50)
