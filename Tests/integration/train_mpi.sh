#!/usr/bin/env bash
# mancs-dist under `mpirun -np 2` on a small synthetic dataset and a small model:
# replicas identical, runs reproducible, exact resume, -np 2 == -np 1 --accumulate 2
# (local mining and statistics),
# SIGTERM checkpoints and exits 0, a truncated checkpoint is skipped, a killed rank
# ends the job, a NaN stops the run without a checkpoint of it, and training lowers the loss.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
make_dataset "$WORK/data" --train-ids 12 --test-ids 6 --images-per-id 6 --cameras 3 --seed 1 --height 64 --width 32
common=(--data "$WORK/data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 --ids-per-batch 4
        --images-per-id 3 --seed 7 --loader-threads 1 --log-every 1 --lr 1e-3 --checkpoint-every 5)

# 1. A 2-rank run: replicas identical at the end, loss goes down; evaluations at
#    step 0 and at the end are logged and the best model is kept.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/a" --max-steps 30 --eval-every 100 > "$WORK/a.log" 2>&1 || { cat "$WORK/a.log"; fail "2-rank run"; }
check "replicas bit-identical after training" grep -q "replicas identical on 2 rank(s)" "$WORK/a.log"
first=$(train_losses "$WORK/a/metrics.jsonl" | head -n 5 | awk '{s+=$1} END {print s/NR}')
last=$(train_losses "$WORK/a/metrics.jsonl" | tail -n 5 | awk '{s+=$1} END {print s/NR}')
echo "mean loss of the first 5 steps $first, of the last 5 $last"
check "training lowers the loss" awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a)}'
check "best.h5 kept" test -f "$WORK/a/best.h5"
check "config.yaml written" grep -q "ids-per-batch: 4" "$WORK/a/config.yaml"
check "config.yaml records the initialisation" grep -q "^init: pytorch" "$WORK/a/config.yaml"
check "checkpoint retention keeps 3" test "$(ls "$WORK/a/checkpoints" | wc -l)" -eq 3

# 2. The same command again: bit-identical checkpoints.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/b" --max-steps 30 > "$WORK/b.log" 2>&1 || { cat "$WORK/b.log"; fail "second run"; }
check "two runs with the same seed write identical checkpoints" \
    "$MANCS" diff "$WORK/a/checkpoints/step-00000030.h5" "$WORK/b/checkpoints/step-00000030.h5"

# 3. Stop at step 12, resume to 30: identical to the straight run.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/c" --max-steps 12 > "$WORK/c1.log" 2>&1 || { cat "$WORK/c1.log"; fail "first half"; }
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/c" --max-steps 30 > "$WORK/c2.log" 2>&1 || { cat "$WORK/c2.log"; fail "resumed half"; }
check "resume logs where it resumed" grep -q "resumed from .*step-00000012.h5 at step 12" "$WORK/c2.log"
check "resumed run ends bit-identical to the straight run (model, buffers, optimiser)" \
    "$MANCS" diff "$WORK/a/checkpoints/step-00000030.h5" "$WORK/c/checkpoints/step-00000030.h5" --groups model,buffers,optimizer

# 4. With per-rank mining and statistics (a micro-batch is the unit of both), -np 2
#    and -np 1 --accumulate 2 average the same gradient on the same global batch.
#    (The defaults, global mining and synchronised BatchNorm, make -np 2 equal -np 1
#    instead: Tests/integration/scaleout_mpi.sh.)
local_settings=(--triplet-mining local --batch-norm local)
mpi -np 2 "$MANCS_DIST" "${common[@]}" "${local_settings[@]}" --run-dir "$WORK/g2" --max-steps 1 --dump-gradients "$WORK/g2.h5" > "$WORK/g2.log" 2>&1 || { cat "$WORK/g2.log"; fail "np 2 gradient"; }
"$MANCS_DIST" "${common[@]}" "${local_settings[@]}" --run-dir "$WORK/g1" --max-steps 1 --accumulate 2 --dump-gradients "$WORK/g1.h5" > "$WORK/g1.log" 2>&1 || { cat "$WORK/g1.log"; fail "np 1 accumulate 2 gradient"; }
# Relative 1e-5 per tensor; tensors whose exact gradient is zero (the rank and cls fc
# biases: the triplet loss cancels one, BatchNorm the other) hold ~1e-9 of rounding
# noise whose relative difference means nothing, hence the absolute floor.
check "local settings: -np 2 gradient equals -np 1 --accumulate 2 gradient" "$MANCS" diff "$WORK/g2.h5" "$WORK/g1.h5" --tolerance 1e-5 --absolute-tolerance 1e-7

# 5a. SIGTERM to one rank mid-run: every rank stops after the same step, a checkpoint, exit 0.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/s" --max-steps 100000 --checkpoint-every 100000 > "$WORK/s.log" 2>&1 &
job=$!
wait_for_train_lines "$WORK/s" 3
rank=$(rank_pid "$WORK/s")
kill -TERM "$rank"
status=0; timeout 60 tail --pid=$job -f /dev/null || true; wait $job || status=$?
check "SIGTERM: clean exit" test "$status" -eq 0
check "SIGTERM: says so" grep -q "stop requested" "$WORK/s.log"
ckpt=$(newest_checkpoint "$WORK/s")
check "SIGTERM: checkpoint written" test -n "$ckpt"
k=$((10#$(basename "$ckpt" .h5 | cut -d- -f2)))
echo "stopped at step $k"
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/s" --max-steps $((k + 2)) > "$WORK/s2.log" 2>&1 || { cat "$WORK/s2.log"; fail "resume after SIGTERM"; }
check "resume after SIGTERM continues from it" grep -q "at step $k" "$WORK/s2.log"

# 5b. A truncated newest checkpoint is skipped by --resume auto.
newest=$(newest_checkpoint "$WORK/s")
previous=$(ls "$WORK/s/checkpoints"/step-*.h5 | sort | tail -n 2 | head -n 1)
truncate -s $(( $(stat -c %s "$newest") / 2 )) "$newest"
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/s" --max-steps $((k + 3)) > "$WORK/s3.log" 2>&1 || { cat "$WORK/s3.log"; fail "resume past a truncated checkpoint"; }
check "truncated checkpoint skipped with a warning" grep -q "$(basename "$newest")" "$WORK/s3.log"
check "resumed from the previous checkpoint ($(basename "$previous"))" grep -q "resumed from .*$(basename "$previous")" "$WORK/s3.log"

# 5c. SIGKILL of one rank ends the whole job, non-zero, within 30 seconds.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/k" --max-steps 100000 --checkpoint-every 100000 > "$WORK/k.log" 2>&1 &
job=$!
wait_for_train_lines "$WORK/k" 2
kill -KILL "$(rank_pid "$WORK/k")"
start=$(date +%s); status=0
timeout 30 tail --pid=$job -f /dev/null || { kill -KILL $job; fail "job still running 30 s after a rank was killed"; }
wait $job || status=$?
check "SIGKILL of a rank: job ends non-zero (status $status) in $(( $(date +%s) - start )) s" test "$status" -ne 0

# 6. Errors before training: P not divisible by the world size, reported once.
status=0
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/e" --ids-per-batch 3 > "$WORK/e.log" 2>&1 || status=$?
check "P not divisible: non-zero exit" test "$status" -ne 0
check "P not divisible: one clear message" test "$(grep -c "does not divide" "$WORK/e.log")" -eq 1

# 6a. Other errors before training, each one line from rank 0 and a non-zero exit:
#     a missing data folder, an unreadable --pretrained, a checkpoint of another architecture.
echo "not safetensors" > "$WORK/junk.safetensors"
ckpt_a=$(newest_checkpoint "$WORK/a")
for case in "missing data|no such folder|--data $WORK/nowhere" \
            "unreadable --pretrained|junk.safetensors|--pretrained $WORK/junk.safetensors" \
            "another architecture|another architecture|--base-width 16 --resume $ckpt_a"; do
    IFS='|' read -r what pattern flags <<< "$case"
    status=0
    # shellcheck disable=SC2086  # $flags is a word list on purpose
    mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/err" $flags --max-steps 2 > "$WORK/err.log" 2>&1 || status=$?
    check "$what: non-zero exit" test "$status" -ne 0
    check "$what: one error line" test "$(grep -c "^mancs-dist: error.*$pattern" "$WORK/err.log")" -eq 1
    rm -rf "$WORK/err"
done

# 6b. A diverging run (absurd --lr): stops at the first non-finite loss or gradient,
#     names the step once, exits non-zero, and writes no checkpoint of that state.
status=0
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/n" --lr 1e30 --checkpoint-every 1 --max-steps 20 > "$WORK/n.log" 2>&1 || status=$?
check "NaN: non-zero exit" test "$status" -ne 0
check "NaN: one message naming the step" test "$(grep -c "non-finite .* Stopped without writing a checkpoint" "$WORK/n.log")" -eq 1
bad_step=$(grep -o "step [0-9]*: non-finite" "$WORK/n.log" | head -n 1 | grep -o "[0-9]*")
echo "diverged at step $bad_step"
last_ckpt=$(newest_checkpoint "$WORK/n" || true)
last_step=$([ -n "$last_ckpt" ] && echo $((10#$(basename "$last_ckpt" .h5 | cut -d- -f2))) || echo 0)
check "NaN: newest checkpoint (step $last_step) is from before step $bad_step" test "$last_step" -lt "$bad_step"
if [ -n "$last_ckpt" ]; then check "NaN: that checkpoint verifies" "$MANCS" inspect "$last_ckpt"; fi
# 7. As documented for users: mpirun with the hostfile of this machine.
hostfile="$(cd "$(dirname "$0")/../.." && pwd)/hostfiles/localhost"
mpirun --allow-run-as-root --hostfile "$hostfile" -np 2 --bind-to core "$MANCS_DIST" "${common[@]}" \
    --run-dir "$WORK/h" --max-steps 3 --threads 1 > "$WORK/h.log" 2>&1 || { cat "$WORK/h.log"; fail "mpirun --hostfile hostfiles/localhost"; }
check "mpirun --hostfile hostfiles/localhost -np 2 trains" grep -q "replicas identical on 2 rank(s)" "$WORK/h.log"

# 8. Learning for real: 400 steps on more identities beat the untrained model.
make_dataset "$WORK/eval-data" --train-ids 16 --test-ids 20 --images-per-id 6 --cameras 3 --seed 1 --height 64 --width 32
mpi -np 2 "$MANCS_DIST" --data "$WORK/eval-data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 \
    --ids-per-batch 4 --images-per-id 4 --seed 7 --loader-threads 1 --log-every 100 --lr 2e-3 --t0 5 --t1 10 \
    --run-dir "$WORK/learn" --max-steps 400 --eval-every 1000 > "$WORK/learn.log" 2>&1 || { cat "$WORK/learn.log"; fail "learning run"; }
metric() { grep '"kind":"eval"' "$WORK/learn/metrics.jsonl" | "$1" -n 1 | grep -o "\"$2\":[-0-9.e]*" | cut -d: -f2; }
echo "untrained: rank-1 $(metric head rank1), mAP $(metric head mAP); after 400 steps: rank-1 $(metric tail rank1), mAP $(metric tail mAP)"
check "the trained model beats the untrained one (rank-1)" awk -v a="$(metric head rank1)" -v b="$(metric tail rank1)" 'BEGIN {exit !(b > a)}'
check "the trained model beats the untrained one (mAP)" awk -v a="$(metric head mAP)" -v b="$(metric tail mAP)" 'BEGIN {exit !(b > a + 0.05)}'
rm -rf "$WORK"
