"""lm-eval task definitions of this repository (``--include_path sparsed/eval/tasks``).

``sparsed_gsm8k`` (GSM8K, strict and flexible match), ``sparsed_mmlu`` (MMLU answered by generation, one
subtask per subject, 5-shot from each subject's dev split, scored by lm-eval's ``exact_match`` rule with
the lenient ``acc_lenient`` beside it) and ``sparsed_humaneval`` (pass@1 by execution).
Their data comes from ``sparsed.eval.benchdata`` (local folders when offline, the hub otherwise); the
YAML files reach it through ``hooks.py``. Options reach the loaders as lm-eval task metadata
(``TaskManager(metadata={"data_dir": ...})`` or ``--metadata '{"data_dir": ...}'``).
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
TASK_NAMES = {"gsm8k": "sparsed_gsm8k", "mmlu": "sparsed_mmlu", "humaneval": "sparsed_humaneval"}
