"""lm-eval's command line with the ``sparsed`` model registered and this repository's tasks on the path.

    python -m sparsed.eval.cli --model sparsed --model_args model=llada,model.path=/ckpt/LLaDA-1.5 \\
        --tasks sparsed_gsm8k --num_fewshot 4 --metadata '{"data_dir": "../shared/data/gsm8k"}'

``--include_path sparsed/eval/tasks`` is added unless given, so ``sparsed_gsm8k``, ``sparsed_mmlu`` and
``sparsed_humaneval`` resolve; lm-eval's own tasks work too (``--tasks gsm8k``, with hub access). ``sparsed_humaneval`` runs
model-written code and needs ``--confirm_run_unsafe_code``.
"""

from __future__ import annotations

import sys

from sparsed.eval.tasks import TASKS_DIR


def main(argv: list[str] | None = None) -> None:
    from lm_eval.__main__ import cli_evaluate

    import sparsed.eval.lm_eval_model  # noqa: F401 - registers the "sparsed" model

    args = list(sys.argv[1:] if argv is None else argv)
    if "--include_path" not in args:
        args += ["--include_path", str(TASKS_DIR)]
    sys.argv = [sys.argv[0], *args]
    cli_evaluate()


if __name__ == "__main__":
    main()
