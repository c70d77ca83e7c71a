#!/usr/bin/env bash
# A real single-node Slurm runs launch/mancs.sbatch with 2 tasks. After the first
# checkpoint the batch shell gets USR1 (as Slurm sends before a time limit); the
# job must checkpoint, requeue itself, resume, and finish with the same weights as
# an uninterrupted run. Slurm binds tasks (TaskPlugin=task/affinity): every rank
# logs its CPUs, which must be the job's allocation, one per task; a job with
# --threads above the CPUs a task holds must warn.
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

# CPU binding (TaskPlugin=task/affinity): every rank logs the CPUs it got; they
# must be the job's allocation, one CPU per task, no CPU shared.
alloc=$(scontrol show job -d "$job" 2>/dev/null | grep -o 'CPU_IDs=[0-9,-]*' | head -n 1 | cut -d= -f2 || true)
[ -n "$alloc" ] || alloc=$(sacct -n -X -j "$job" -o AllocCPUS 2>/dev/null | head -n 1 | tr -d ' ')
grep 'CPU affinity' "$out" | tail -n 2
ranks=$(grep -o 'rank [01] on [^:]*: CPU affinity [0-9,-]* ([0-9]* CPUs*)' "$out" | tail -n 2)
check "both ranks logged their affinity" test "$(echo "$ranks" | grep -c .)" -eq 2
check "each task holds one CPU (--cpus-per-task=1)" test "$(echo "$ranks" | grep -c '(1 CPU)')" -eq 2
cpus=$(echo "$ranks" | sed 's/.*CPU affinity \([0-9,-]*\) .*/\1/' | sort -u | paste -sd, -)
echo "allocation: CPU_IDs=$alloc; ranks bound to: $cpus"
check "the two ranks are bound to different CPUs" test "$(echo "$cpus" | tr , '\n' | grep -c .)" -eq 2
case "$alloc" in *-*) lo=${alloc%-*}; hi=${alloc#*-}; alloc_list=$(seq -s, "$lo" "$hi") ;; *) alloc_list=$alloc ;; esac
check "the ranks' CPUs are the job's allocation" test "$cpus" = "$alloc_list"

# --threads above the CPUs a task holds: every rank warns.
job2=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 --job-name=mancs-aff -o "$WORK/aff-%j.out" \
      "$root/launch/mancs.sbatch" "${common[@]}" --run-dir "$WORK/aff" --max-steps 1 --threads 2)
for _ in $(seq 1 120); do
    state=$(scontrol show job "$job2" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
    case "$state" in COMPLETED|FAILED|CANCELLED*|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|"") break ;; esac
    sleep 1
done
grep 'warning' "$WORK/aff-$job2.out" || true
check "a rank holding fewer CPUs than --threads warns" grep -q 'may run on 1 CPU(s) .* but --threads is 2' "$WORK/aff-$job2.out"
cd /; rm -rf "$WORK"
