#!/usr/bin/env bash
# Latency of run.py on the GPU machine for several attention settings; copies each result.json to $OUT.
#   bash scripts/gpu_latency.sh "model=llada model.init=random prompt=16k" dense:attention=dense sparsed:attention=sparsed
set -euo pipefail
common=$1; shift
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
for spec in "$@"; do
  name=${spec%%:*}; overrides=${spec#*:}
  dir=/tmp/runs/$name
  # shellcheck disable=SC2086
  python3 run.py $common ${overrides//,/ } run.progress=false hydra.run.dir=$dir 2>&1 | grep -v -i warn | tail -8
  cp $dir/result.json "${OUT:-results}/$name.json"
done
