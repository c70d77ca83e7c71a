#!/usr/bin/env bash
# A real single-node Slurm runs launch/mancs.sbatch with 2 tasks. After the first
# checkpoint the batch shell gets USR1 (as Slurm sends before a time limit); the
# job must checkpoint, requeue itself, resume, and finish with the same weights as
# an uninterrupted run.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/slurm.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
trap 'slurm_stop' EXIT
slurm_start || fail "could not start a single-node Slurm"

make_dataset "$WORK/data" --train-ids 12 --test-ids 6 --images-per-id 6 --cameras 3 --seed 2 --height 64 --width 32
steps=400
common=(--data "$WORK/data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 --ids-per-batch 4
        --images-per-id 3 --seed 11 --loader-threads 1 --log-every 10 --checkpoint-every 20 --max-steps $steps)

# The uninterrupted reference.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/ref" > "$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "reference run"; }

# The Slurm job: MANCS_DIST tells the script which build to run.
export MANCS_DIST
cd "$WORK"
job=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 --job-name=mancs-it -o "$WORK/job-%j.out" \
      "$root/launch/mancs.sbatch" "${common[@]}" --run-dir "$WORK/run")
echo "submitted job $job"
for _ in $(seq 1 600); do
    ls "$WORK/run/checkpoints"/step-*.h5 >/dev/null 2>&1 && break
    sleep 0.1
done
ls "$WORK/run/checkpoints"/step-*.h5 >/dev/null 2>&1 || { cat "$WORK"/job-*.out; fail "no first checkpoint"; }
scancel --signal=USR1 --batch "$job"
echo "sent USR1 to the batch shell of job $job"

# Wait for the requeued job to run to the end (Slurm delays a requeued job's start a little).
for _ in $(seq 1 300); do
    state=$(sacct -n -X -j "$job" -o State 2>/dev/null | tail -n 1 | tr -d ' ' || true)
    [ -z "$state" ] && state=$(scontrol show job "$job" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
    case "$state" in COMPLETED|FAILED|CANCELLED*|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    sleep 1
done
out="$WORK/job-$job.out"
cat "$out"
check "job completed" test "$state" = COMPLETED
check "ranks were told to stop and checkpointed" grep -q "stop requested" "$out"
check "the job requeued itself" grep -q "requeueing job $job" "$out"
check "the job started again" grep -q "restart 1" "$out"
check "the second start resumed from the checkpoint" grep -q "resumed from .*step-" "$out"
check "the job reached the last step" test -f "$WORK/run/checkpoints/step-$(printf %08d $steps).h5"
check "final weights equal the uninterrupted run" "$MANCS" diff "$WORK/ref/checkpoints/step-$(printf %08d $steps).h5" \
    "$WORK/run/checkpoints/step-$(printf %08d $steps).h5" --groups model,buffers,optimizer
cd /; rm -rf "$WORK"
