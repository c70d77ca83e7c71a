#!/usr/bin/env bash
# What the trainer leaves for people to look at: RUN_DIR/log.txt holds every line
# it printed; RUN_DIR/tensorboard/ holds event files that the tensorboard
# package's own reader loads (pip-installed if missing), with the losses, lr,
# gradient norm, imgs/s, rank-1, mAP and mINP of metrics.jsonl. Also --version.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
python3 -c "import tensorboard" 2>/dev/null || python3 -m pip install --quiet tensorboard \
    || fail "cannot pip install tensorboard (the event reader this test uses)"
make_dataset "$WORK/data" --train-ids 8 --test-ids 4 --images-per-id 4 --cameras 2 --seed 5 --height 64 --width 32
args=(--data "$WORK/data" --run-dir "$WORK/run" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32
      --ids-per-batch 4 --images-per-id 2 --loader-threads 1 --log-every 1 --epochs 4 --eval-every 2)
"$MANCS_DIST" "${args[@]}" --max-steps 5 > "$WORK/out1.txt" 2>&1 || { cat "$WORK/out1.txt"; fail "training run"; }
"$MANCS_DIST" "${args[@]}" > "$WORK/out2.txt" 2>&1 || { cat "$WORK/out2.txt"; fail "resumed run"; }
cat "$WORK/out1.txt" "$WORK/out2.txt" > "$WORK/out.txt"
check "log.txt = every line printed by both runs" diff "$WORK/out.txt" "$WORK/run/log.txt"
check "log.txt has the evaluations" grep -q "eval (epoch 2" "$WORK/run/log.txt"
check "tensorboard events = metrics.jsonl (read by tensorboard's EventAccumulator)" \
    python3 "$(dirname "$0")/lib/tensorboard_check.py" "$WORK/run"
for bin in "$MANCS" "$MANCS_DIST"; do
    v=$("$bin" --version)
    check "$(basename "$bin") --version prints a version ($v)" test -n "$v"
done
check "both executables print the same version" test "$("$MANCS" --version)" = "$("$MANCS_DIST" --version)"
