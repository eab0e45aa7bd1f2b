#!/usr/bin/env bash
# The small model's RULER table (dense / SparseD / sliding window at 2k and 4k) on the GPU machine.
#   bash scripts/gpu_eval_small.sh LIMIT
set -uo pipefail
limit=${1:-20}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
common="model=small task=ruler task.limit=$limit task.batch_size=16 task.seed=0 run.progress=false"
for spec in "2k:dense:attention=dense" "2k:sparsed:attention=sparsed sparsed.block_size=64" \
            "2k:window:attention=sliding_window attention.ws=512" \
            "4k:dense:attention=dense" "4k:sparsed:attention=sparsed sparsed.block_size=128" \
            "4k:window:attention=sliding_window attention.ws=1024"; do
  IFS=: read -r len name overrides <<< "$spec"
  dir=/tmp/eval/${len}_$name
  # shellcheck disable=SC2086
  python3 run.py $common prompt=$len $overrides hydra.run.dir=$dir 2>&1 | grep -v -i warn | tail -16
  cp $dir/result.json "$OUT/ruler_small_${len}_$name.json"
done
