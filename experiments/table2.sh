#!/usr/bin/env bash
# Table 2 (accuracy column): SparseD's components on RULER-4k with LLaDA-1.5 (paper: FlashAttention 90.45,
# SparseD 90.89, - Skipping Sparse 87.91, - Sparse Reusing 90.82, - Isolated Selection 90.53).
# The paper does not say how "- Skipping Sparse" was run; two readings are swept:
#   sparsed.skip=0                        the released schedule with skip 0 (steps 0-1 still dense)
#   sparsed.skip=0 sparsed.compat=paper   Algorithm 1: sparse from step 0 (pattern from step 0's own q/k)
# The latency column is scripts' 64k latency task (task=latency prompt=64k), not this script.
#   LLADA_PATH=/ckpt/LLaDA-1.5 experiments/table2.sh && python experiments/collect.py multirun/table2 --per-task
source "$(dirname "$0")/common.sh"
read -r -a llada <<< "${MODELS[0]}"
base=("${llada[@]}" task=ruler prompt=4k "${qa_data[@]}" "${LIMIT_ARG[@]}")
run_sweep table2/dense "${base[@]}" attention=dense
run_sweep table2/sparsed "${base[@]}" attention=sparsed paper=4k
run_sweep table2/no_skip "${base[@]}" attention=sparsed paper=4k sparsed.skip=0 sparsed.compat=reference,paper
run_sweep table2/no_reuse "${base[@]}" attention=sparsed paper=4k sparsed.reuse=false
run_sweep table2/no_isolated "${base[@]}" attention=sparsed paper=4k sparsed.isolated=false
