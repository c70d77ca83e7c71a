#!/usr/bin/env bash
# Both intervals in either unit: --eval-every-steps evaluates at those steps (and
# at step 0 and the end), --checkpoint-every-epochs checkpoints at epoch ends; the
# step- and epoch-counted flags keep their meaning.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
make_dataset "$WORK/data" --train-ids 8 --test-ids 3 --images-per-id 4 --cameras 2 --seed 8 --height 64 --width 32
common=(--data "$WORK/data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 --ids-per-batch 4
        --images-per-id 2 --loader-threads 1 --log-every 1 --epochs 4 --keep-checkpoints 20)
# 2 steps per epoch, 8 steps: evaluations at 0, 3, 6 and 8 (final); checkpoints at epoch ends 2, 4, 6, 8.
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/a" --eval-every-steps 3 --checkpoint-every 1000 \
    --checkpoint-every-epochs 1 > "$WORK/a.log" 2>&1 || { cat "$WORK/a.log"; fail "run"; }
evals=$(grep '"kind":"eval"' "$WORK/a/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2 | xargs)
echo "evaluations at steps: $evals"
check "--eval-every-steps 3: evaluations at steps 0 3 6 8" test "$evals" = "0 3 6 8"
ckpts=$(ls "$WORK/a/checkpoints" | sed -n 's/^step-0*\([0-9]*\)\.h5$/\1/p' | xargs)
echo "checkpoints at steps: $ckpts"
check "--checkpoint-every-epochs 1: checkpoints at steps 2 4 6 8" test "$ckpts" = "2 4 6 8"
check "an evaluation between epoch ends is labelled by its step" grep -q '"label":"step 3"' "$WORK/a/metrics.jsonl"
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/b" --eval-every 2 --checkpoint-every 3 > "$WORK/b.log" 2>&1 || { cat "$WORK/b.log"; fail "run b"; }
evals=$(grep '"kind":"eval"' "$WORK/b/metrics.jsonl" | grep -o '"step":[0-9]*' | cut -d: -f2 | xargs)
ckpts=$(ls "$WORK/b/checkpoints" | sed -n 's/^step-0*\([0-9]*\)\.h5$/\1/p' | xargs)
echo "epoch/step flags: evaluations at $evals, checkpoints at $ckpts"
check "--eval-every 2 (epochs) and --checkpoint-every 3 (steps) unchanged" test "$evals / $ckpts" = "0 4 8 / 3 6 8"
