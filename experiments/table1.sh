#!/usr/bin/env bash
# Table 1: {LLaDA-1.5, Dream-7B-Instruct} x {dense (FlashAttention), sliding window, StreamingLLM, SparseD}
# on MMLU (5-shot), GSM8K (4-shot), HumanEval (0-shot), RULER-4k and RULER-8k, with Table 3's settings
# (they are the defaults of configs/task/*.yaml). dKV-Cache and Fast-dLLM rows: not implemented.
#   LLADA_PATH=/ckpt/LLaDA-1.5 DREAM_PATH=/ckpt/Dream-v0-Instruct-7B experiments/table1.sh
#   python experiments/collect.py multirun/table1          # the table
source "$(dirname "$0")/common.sh"
SHORT_METHODS=(paper=short attention=dense,sliding_window,streaming_llm,sparsed)
for i in 0 1; do
  read -r -a model <<< "${MODELS[$i]}"
  name=$([[ $i == 0 ]] && echo llada || echo dream)
  # the paper batches Dream's RULER prompts (16 at 4k, 8 at 8k); batching does not change the answers
  bs4=$([[ $name == dream ]] && echo 16 || echo 1); bs8=$([[ $name == dream ]] && echo 8 || echo 1)
  run_sweep "table1/$name/mmlu" "${model[@]}" task=mmlu "${mmlu_data[@]}" "${SHORT_METHODS[@]}" "${LIMIT_ARG[@]}"
  run_sweep "table1/$name/gsm8k" "${model[@]}" task=gsm8k "${gsm8k_data[@]}" "${SHORT_METHODS[@]}" "${LIMIT_ARG[@]}"
  run_sweep "table1/$name/humaneval" "${model[@]}" task=humaneval "${SHORT_METHODS[@]}" "${LIMIT_ARG[@]}"
  run_sweep "table1/$name/ruler_4k" "${model[@]}" task=ruler prompt=4k task.batch_size="$bs4" "${qa_data[@]}" \
    paper=4k attention=dense,sliding_window,streaming_llm,sparsed "${LIMIT_ARG[@]}"
  run_sweep "table1/$name/ruler_8k" "${model[@]}" task=ruler prompt=8k task.batch_size="$bs8" "${qa_data[@]}" \
    paper=8k attention=dense,sliding_window,streaming_llm,sparsed "${LIMIT_ARG[@]}"
done
