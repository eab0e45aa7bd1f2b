"""RULER metrics on hand-made examples."""

from __future__ import annotations

import math

import pytest

from sparsed.eval.ruler_metrics import (
    RULER_TASKS,
    TASK_METRICS,
    postprocess_pred,
    ruler_average,
    score,
    string_match_all,
    string_match_part,
)


def test_string_match_all_exact_partial_and_case():
    preds = ["The number is 1234567.", "values: 11, 22", "nothing here", "ALPHA-BETA and gamma"]
    refs = [["1234567"], ["11", "22", "33", "44"], ["5"], ["alpha-beta", "Gamma"]]
    # per sample: 1, 2/4, 0, 1 -> mean 0.625
    assert string_match_all(preds, refs) == 62.5


def test_string_match_part_any_reference_counts():
    preds = ["Paris, France", "I think it is 7", "no idea"]
    refs = [["paris", "Lyon"], ["seven", "7"], ["42"]]
    assert string_match_part(preds, refs) == pytest.approx(66.67)


def test_multi_answer_all_vs_part_differ():
    preds = ["red"]
    refs = [["red", "blue"]]
    assert string_match_all(preds, refs) == 50.0
    assert string_match_part(preds, refs) == 100.0


def test_rounding_like_ruler():
    assert string_match_all(["a", "b", "x"], [["a"], ["b"], ["c"]]) == 66.67


def test_bad_inputs():
    with pytest.raises(ValueError):
        string_match_all(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError):
        string_match_part([], [])
    with pytest.raises(ValueError):
        string_match_all(["a"], [[]])


def test_postprocess():
    assert postprocess_pred("  answer\tis\x00 42 \n\n") == "answer\nis\n 42"
    # Nothing beyond control characters and outer whitespace is touched.
    assert postprocess_pred("First line.\n\nSecond") == "First line.\n\nSecond"


def test_score_postprocesses_by_default():
    assert score("string_match_all", ["AB\x01CD"], [["ab\ncd"]]) == 100.0
    assert score("string_match_all", ["AB\x01CD"], [["ab\ncd"]], postprocess=False) == 0.0


def test_task_metrics_cover_the_13_tasks():
    assert len(RULER_TASKS) == 13
    assert TASK_METRICS["qa_1"] == TASK_METRICS["qa_2"] == "string_match_part"
    assert TASK_METRICS["vt"] == "string_match_all"


def test_ruler_average_with_not_run_tasks():
    result = ruler_average({"niah_single_1": 100.0, "vt": 50.0, "qa_1": None, "cwe": math.nan})
    assert result["average"] == 75.0
    assert result["tasks_run"] == ["niah_single_1", "vt"]
    assert result["tasks_not_run"] == ["qa_1", "cwe"]
    assert result["complete"] is False


def test_ruler_average_expected_tasks():
    scores = {t: 80.0 for t in RULER_TASKS if not t.startswith("qa")}
    result = ruler_average(scores, tasks=RULER_TASKS)
    assert result["average"] == 80.0 and result["tasks_not_run"] == ["qa_1", "qa_2"]
    full = ruler_average({**scores, "qa_1": 40.0, "qa_2": 40.0}, tasks=RULER_TASKS)
    assert full["complete"] is True and full["average"] == pytest.approx((11 * 80 + 80) / 13, abs=0.01)
    assert ruler_average({"qa_1": None})["average"] is None
