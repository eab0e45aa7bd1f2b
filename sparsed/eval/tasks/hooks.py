"""Functions the task YAML files name with ``!function hooks.<name>`` (lm-eval loads this file by path)."""

from sparsed.eval.answers import mmlu_process_results, mmlu_target
from sparsed.eval.benchdata import gsm8k_dataset, humaneval_dataset, mmlu_dataset
from sparsed.eval.code_exec import humaneval_process_results

__all__ = [
    "gsm8k_dataset",
    "humaneval_dataset",
    "humaneval_process_results",
    "humaneval_prompt",
    "mmlu_dataset",
    "mmlu_process_results",
    "mmlu_target",
    "no_target",
]


def humaneval_prompt(doc: dict) -> str:
    # A function, not a Jinja template: HumanEval prompts are code and may contain "{{".
    return doc["prompt"]


def no_target(doc: dict) -> str:
    return ""
