"""Regression pins: what already matches NVIDIA RULER exactly (scripts/synthetic.yaml, synthetic/constants.py,
eval/synthetic/constants.py, eval/evaluate.py) and must stay so. Values are RULER's, written out here."""

from __future__ import annotations

import pytest

from sparsed.data.ruler import GEN_LENGTH, TASKS, cwe, fwe, niah, qa, vt
from sparsed.data.ruler.haystack import DEPTHS, NOISE
from sparsed.eval.ruler_metrics import TASK_METRICS, postprocess_pred, score

# scripts/synthetic.yaml: (haystack, key type, value type, keys, values, queries) per niah task.
NIAH = {
    "niah_single_1": ("noise", "words", "numbers", 1, 1, 1),
    "niah_single_2": ("essay", "words", "numbers", 1, 1, 1),
    "niah_single_3": ("essay", "words", "uuids", 1, 1, 1),
    "niah_multikey_1": ("essay", "words", "numbers", 4, 1, 1),
    "niah_multikey_2": ("needle", "words", "numbers", 1, 1, 1),
    "niah_multikey_3": ("needle", "uuids", "uuids", 1, 1, 1),
    "niah_multivalue": ("essay", "words", "numbers", 1, 4, 1),
    "niah_multiquery": ("essay", "words", "numbers", 1, 1, 4),
}


def test_task_configurations():
    for name, expected in NIAH.items():
        c = niah.CONFIGS[name]
        assert (c.haystack, c.key_type, c.value_type, c.num_keys, c.num_values, c.num_queries) == expected
    assert set(niah.CONFIGS) == set(NIAH)
    v = vt.VtConfig()
    assert (v.num_chains, v.num_hops, v.haystack, v.fewshot) == (1, 4, "noise", True)
    c = cwe.CweConfig()
    assert (c.freq_cw, c.freq_ucw, c.num_cw, c.num_fewshot) == (30, 3, 10, 1)
    f = fwe.FweConfig()
    assert (f.alpha, f.coded_wordlen, f.vocab_size) == (2.0, 6, None)
    assert {t: TASKS[t].family for t in ("qa_1", "qa_2")} == {"qa_1": "qa", "qa_2": "qa"}
    from sparsed.data.ruler import QA_DATASETS

    assert QA_DATASETS == {"qa_1": "squad", "qa_2": "hotpotqa"}


def test_tokens_to_generate_and_metrics():
    assert GEN_LENGTH == {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}
    for name, spec in TASKS.items():
        assert spec.gen_length == GEN_LENGTH[spec.family]
        assert spec.metric == TASK_METRICS[name] == ("string_match_part" if spec.family == "qa" else "string_match_all")


def test_templates_and_answer_prefixes():
    assert niah.TEMPLATE_PLURAL == (
        "Some special magic {kind} are hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the {kind} afterwards.\n{context}\n"
        "What are all the special magic {kind} for {query} mentioned in the provided text?"
    )
    assert niah.PREFIX_PLURAL == " The special magic {kind} for {query} mentioned in the provided text are"
    # RULER's singular rewrite: Some -> A, "are all" -> is, are -> is
    singular = niah.TEMPLATE_PLURAL.replace("Some", "A").replace("are all", "is").replace("are", "is")
    assert niah.TEMPLATE_SINGULAR == singular
    assert niah.PREFIX_SINGULAR == niah.PREFIX_PLURAL.replace("are", "is")
    assert niah.NEEDLE == "One of the special magic {kind} for {key} is: {value}."
    assert vt.TEMPLATE == (
        "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
        "Question: Find all variables that are assigned the value {query} in the text above."
    )
    assert vt.PREFIX == (
        " Answer: According to the chain(s) of variable assignment in the text above, {num_v} variables are "
        "assigned the value {query}, they are: "
    )
    assert cwe.TEMPLATE.format(num_cw=10, context="{context}") == (
        "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones "
        "that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?"
    )
    assert cwe.PREFIX.format(num_cw=10) == " Answer: The top 10 words that appear most often in the list are:"
    assert fwe.TEMPLATE == (
        "Read the following coded text and track the frequency of each coded word. Find the three most frequently "
        "appeared coded words. {context}\nQuestion: Do not provide any explanation. Please ignore the dots '....'. "
        "What are the three most frequently appeared words in the above coded text?"
    )
    assert fwe.PREFIX == " Answer: According to the coded text above, the three most frequently appeared words are:"
    instruction = "Answer the question based on the given documents. Only give me the answer and do not output any other words."
    assert qa.TEMPLATE == (
        f"{instruction}\n\nThe following are given documents.\n\n{{context}}\n\n{instruction}\n\nQuestion: {{query}}"
    )
    assert qa.PREFIX == " Answer:" and qa.DOCUMENT == "Document {i}:\n{document}"


def test_haystack_and_depths():
    assert NOISE == "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
    # np.round(np.linspace(0, 100, num=40, endpoint=True)).astype(int)
    assert DEPTHS == [0, 3, 5, 8, 10, 13, 15, 18, 21, 23, 26, 28, 31, 33, 36, 38, 41, 44, 46, 49,
                      51, 54, 56, 59, 62, 64, 67, 69, 72, 74, 77, 79, 82, 85, 87, 90, 92, 95, 97, 100]  # fmt: skip


# (prediction, references, string_match_all, string_match_part), worked out from RULER's definitions:
# postprocess (strip, control characters -> newline, strip), then case-insensitive substring tests.
EDGE = [
    ("8675309", ["8675309"], 100.0, 100.0),
    ("  8675309\n", ["8675309"], 100.0, 100.0),
    ("867 5309", ["8675309"], 0.0, 0.0),
    ("ABC and def", ["abc", "DEF"], 100.0, 100.0),
    ("abc only", ["abc", "def"], 50.0, 100.0),
    ("none", ["abc", "def", "ghi"], 0.0, 0.0),
    ("abc def", ["abc", "def", "ghi"], 66.67, 100.0),
    ("a\tb", ["a\nb"], 100.0, 100.0),  # the tab becomes a newline
    ("a\x00b", ["a\nb"], 100.0, 100.0),
    ("a\x7fb", ["a\nb"], 0.0, 0.0),  # DEL is not in U+0000-U+001F
    ("a b", ["a\nb"], 0.0, 0.0),
    ("", ["x"], 0.0, 0.0),
    ("xyz", [""], 100.0, 100.0),  # the empty string is in everything
    ("Straße", ["STRASSE"], 0.0, 0.0),  # lower(), not casefold()
    ("İ", ["i̇"], 100.0, 100.0),  # "İ".lower() is "i" + combining dot
    ("answer: 12, 123", ["123", "12"], 100.0, 100.0),
]


@pytest.mark.parametrize(("pred", "refs", "all_", "part"), EDGE)
def test_metric_edge_cases(pred, refs, all_, part):
    assert score("string_match_all", [pred], [refs]) == all_
    assert score("string_match_part", [pred], [refs]) == part


def test_metrics_average_and_round_like_ruler():
    preds = ["a", "a b", "c"]
    refs = [["a", "b", "c"], ["a", "b", "c"], ["c"]]
    assert score("string_match_all", preds, refs) == round((1 / 3 + 2 / 3 + 1) / 3 * 100, 2) == 66.67
    assert score("string_match_part", preds, refs) == 100.0
    assert postprocess_pred("\n\x01 x \x1f\n") == "x"
