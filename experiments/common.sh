# Shared by the table scripts: checkpoints and data folders (override through the environment).
#   LLADA_PATH  LLaDA-1.5 checkpoint folder or hub id        (default GSAI-ML/LLaDA-1.5)
#   DREAM_PATH  Dream-v0-Instruct-7B folder or hub id        (default Dream-org/Dream-v0-Instruct-7B)
#   MMLU_DIR    Hendrycks' MMLU data/ folder or cais/mmlu files (default: cais/mmlu from the hub)
#   GSM8K_DIR   folder with train.jsonl/test.jsonl           (default: ../shared/data/gsm8k, else the hub)
#   RULER_QA_DIR folder with dev-v2.0.json and hotpot_dev_distractor_v1.json (default: the hub; else QA "not run")
#   SWEEP_DIR   where the multirun folders go                (default multirun/<table>)
#   LIMIT       samples per task for a quick pass (default: the paper's full sets; RULER 500 per task)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-python}
LLADA_PATH=${LLADA_PATH:-GSAI-ML/LLaDA-1.5}
DREAM_PATH=${DREAM_PATH:-Dream-org/Dream-v0-Instruct-7B}
MODELS=("model=llada model.path=$LLADA_PATH" "model=dream model.path=$DREAM_PATH")
LIMIT_ARG=()
if [[ -n "${LIMIT:-}" ]]; then LIMIT_ARG=("task.limit=$LIMIT"); fi
mmlu_data=(); gsm8k_data=(); qa_data=()
if [[ -n "${MMLU_DIR:-}" ]]; then mmlu_data=("task.data_dir=$MMLU_DIR"); fi
if [[ -n "${GSM8K_DIR:-}" ]]; then gsm8k_data=("task.data_dir=$GSM8K_DIR"); fi
if [[ -n "${RULER_QA_DIR:-}" ]]; then qa_data=("task.qa_dir=$RULER_QA_DIR"); fi
# The paper's method settings per benchmark come from configs/paper/{short,4k,8k}.yaml (paper=...).
run_sweep() {  # run_sweep <sweep subdir> <hydra args...>
  local dir="${SWEEP_DIR:-multirun/$1}"; shift
  echo "+ $PY run.py -m $* hydra.sweep.dir=$dir" >&2
  "$PY" run.py -m "$@" "hydra.sweep.dir=$dir" run.progress=false
}
