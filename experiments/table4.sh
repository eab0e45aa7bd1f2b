#!/usr/bin/env bash
# Table 4: RULER per task at 4k and 8k for both models and all four methods. These are the RULER runs of
# Table 1 (every result.json holds all 13 task scores); run this only if Table 1's RULER runs are missing.
#   experiments/table4.sh && python experiments/collect.py multirun/table4 --per-task
source "$(dirname "$0")/common.sh"
for i in 0 1; do
  read -r -a model <<< "${MODELS[$i]}"
  name=$([[ $i == 0 ]] && echo llada || echo dream)
  bs4=$([[ $name == dream ]] && echo 16 || echo 1); bs8=$([[ $name == dream ]] && echo 8 || echo 1)
  run_sweep "table4/$name/ruler_4k" "${model[@]}" task=ruler prompt=4k task.batch_size="$bs4" "${qa_data[@]}" \
    paper=4k attention=dense,sliding_window,streaming_llm,sparsed "${LIMIT_ARG[@]}"
  run_sweep "table4/$name/ruler_8k" "${model[@]}" task=ruler prompt=8k task.batch_size="$bs8" "${qa_data[@]}" \
    paper=8k attention=dense,sliding_window,streaming_llm,sparsed "${LIMIT_ARG[@]}"
done
