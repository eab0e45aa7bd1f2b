#!/usr/bin/env bash
# One training run of the small DLM on the GPU machine; brings back the checkpoint in <16 MB parts + logs.
#   bash scripts/gpu_train_small.sh STEPS MAX_MINUTES
set -uo pipefail
steps=${1:-9500}; minutes=${2:-8.5}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name --format=csv,noheader
python3 scripts/train_small_dlm.py --out /tmp/small --steps "$steps" --compile --workers 14 --max-minutes "$minutes" \
  --log-every 20 --export-every 2000 --save-every 1000 --no-progress > "$OUT/train.out" 2>&1
echo "train rc=$?"; tail -5 "$OUT/train.out"
cp /tmp/small/log.jsonl /tmp/small/loss.png /tmp/small/train_config.json "$OUT/"
cp /tmp/small/model/config.json "$OUT/config.json"
split -b 15M -d /tmp/small/model/model.safetensors "$OUT/model.safetensors.part"
ls -la "$OUT"
