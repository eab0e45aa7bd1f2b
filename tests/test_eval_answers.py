"""MMLU scoring (lm-eval's exact match and the lenient extraction) and the small text helpers of the lm-eval model."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sparsed.config import GenConfig
from sparsed.eval.answers import extract_choice, lm_eval_exact_match, lm_eval_response, mmlu_process_results
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


DOC = {"question": "Capital of France?", "choices": CHOICES, "answer": 3}  # gold: D (Paris)

# (generated answer, lm-eval's exact_match, the lenient acc), worked out from the definitions: lm-eval keeps
# the first line, strips it, lowercases both sides and drops ASCII punctuation, then compares with "d";
# the lenient rule reads a capital letter (or a choice's text) anywhere in the answer.
MMLU_TABLE = [
    ("D", 1, 1),
    (" D", 1, 1),
    ("D.", 1, 1),
    (" (D)", 1, 1),
    ("D)", 1, 1),
    ("**D**", 1, 1),
    (" D\n", 1, 1),
    (" d", 1, 0),  # right for lm-eval only: the lenient letter is case-sensitive
    (" D\nAnswer: B", 1, 0),  # lm-eval reads the first line; the lenient rule finds "Answer: B" first
    (" D. Paris", 0, 1),  # wrong for lm-eval from here on: the whole first line must be the letter
    (" The answer is D", 0, 1),
    (" Paris", 0, 1),
    (" Answer: D", 0, 1),
    (" Option D", 0, 1),
    (" D is correct", 0, 1),
    ("\nD", 0, 1),  # an empty first line
    (" B", 0, 0),
    (" The answer is B", 0, 0),
    (" Berlin", 0, 0),
    (" d. paris", 0, 0),
    (" DD", 0, 0),
    ("", 0, 0),
]


@pytest.mark.parametrize(("text", "strict", "lenient"), MMLU_TABLE)
def test_mmlu_scores_both_ways(text, strict, lenient):
    assert mmlu_process_results(DOC, [text]) == {"exact_match": float(strict), "acc_lenient": float(lenient)}


def test_the_two_mmlu_scorers_disagree_as_measured():
    strict = sum(row[1] for row in MMLU_TABLE)
    lenient = sum(row[2] for row in MMLU_TABLE)
    disagree = sum(row[1] != row[2] for row in MMLU_TABLE)
    assert (strict, lenient, disagree) == (9, 14, 9)


def test_exact_match_is_lm_eval_s_own_filter_chain_and_metric():
    """Against lm-eval 0.4's installed generative MMLU config: its get_response filters and exact_match."""
    import lm_eval.filters  # registers the filters by name
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.api.registry import get_filter

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/mmlu/generative/_default_template_yaml").read_text())
    (chain,) = [f["filter"] for f in config["filter_list"] if f["name"] == "get_response"]
    (metric,) = config["metric_list"]
    options = {k: metric[k] for k in ("ignore_case", "ignore_punctuation")}
    for text, strict, _ in MMLU_TABLE:
        resps = [[text]]
        for step in chain:
            kwargs = {k: v for k, v in step.items() if k != "function"}
            resps = list(get_filter(step["function"])(**kwargs).apply(resps, [DOC]))
        pred = resps[0]  # take_first leaves one string per document
        official = exact_match_hf_evaluate(predictions=[pred], references=["D"], **options)["exact_match"]
        assert pred == lm_eval_response(text)
        assert lm_eval_exact_match(pred, "D") == official == strict, text


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


def test_gsm8k_prompt_target_and_regexes_are_lm_eval_s():
    """The installed lm-eval gsm8k config and ours: the same prompt, target, metric and filters; only the
    few-shot count differs (4, the paper's, vs 5), which results state in ``num_fewshot_note``."""
    import lm_eval

    from sparsed.eval.tasks import TASKS_DIR

    theirs = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    ours = yaml.load((TASKS_DIR / "gsm8k.yaml").read_text(), yaml.BaseLoader)  # BaseLoader: skips !function
    for key in ("doc_to_text", "doc_to_target", "training_split", "fewshot_split", "test_split"):
        assert ours[key] == theirs[key], key
    assert ours["filter_list"] == yaml.load(yaml.safe_dump(theirs["filter_list"]), yaml.BaseLoader)
    (m_ours,), (m_theirs,) = ours["metric_list"], theirs["metric_list"]
    assert m_ours["regexes_to_ignore"] == m_theirs["regexes_to_ignore"]
    assert (m_ours["ignore_case"], m_ours["ignore_punctuation"]) == ("true", "false")
    assert (m_theirs["ignore_case"], m_theirs["ignore_punctuation"]) == (True, False)
    assert (int(ours["num_fewshot"]), theirs["num_fewshot"]) == (4, 5)
