#!/usr/bin/env bash
# Stopping a 2-rank job. (1) SIGTERM to one rank only: both ranks agree (one
# allreduce of the flag per step) and stop after the same step, exiting 0.
# (1b) SIGUSR1 to mpirun (forwarded to all ranks): clean stop, exit 0.
# (2) SIGKILL to one rank: mpirun ends the whole job non-zero within 30 s.
set -euo pipefail
BIN="${MANCS_BIN:?set MANCS_BIN to the directory holding mancs}"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "mpi_stop.sh: FAIL: $*" >&2; cat "$work"/*.txt >&2 || true; exit 1; }

# Waits until both ranks printed their pid; prints rank 1's.
rank1_pid() {
    for _ in $(seq 1 300); do
        if [ "$(grep -c '^rank [01] pid ' "$1" || true)" = 2 ]; then awk '/^rank 1 pid / {print $4}' "$1"; return 0; fi
        sleep 0.1
    done
    return 1
}

# (1) SIGTERM to rank 1 only.
"${MPIRUN[@]}" "$BIN/mancs" mpi-check --stop-test --steps 600 --step-ms 50 > "$work/term.txt" 2>&1 &
job=$!
pid=$(rank1_pid "$work/term.txt") || fail "ranks did not start"
sleep 1
kill -TERM "$pid"
wait "$job" || fail "job with a SIGTERM-ed rank exited $?"
s0=$(sed -n 's/^rank 0 stopped after step \([0-9]*\).*/\1/p' "$work/term.txt")
s1=$(sed -n 's/^rank 1 stopped after step \([0-9]*\).*/\1/p' "$work/term.txt")
[ -n "$s0" ] && [ "$s0" = "$s1" ] || fail "ranks stopped after different steps ('$s0' vs '$s1')"
[ "$s0" -lt 599 ] || fail "the stop request was not honoured"
grep -q '^rank 1 stopped after step .*signal received here: true' "$work/term.txt" || fail "rank 1 should have received the signal"
grep -q '^rank 0 stopped after step .*signal received here: false' "$work/term.txt" || fail "rank 0 should not have received the signal"
echo "SIGTERM to rank 1: both ranks stopped after step $s0"

# (1b) SIGUSR1 to mpirun: forwarded to every rank; a clean stop, exit 0.
"${MPIRUN[@]}" "$BIN/mancs" mpi-check --stop-test --steps 600 --step-ms 50 > "$work/usr1.txt" 2>&1 &
job=$!
rank1_pid "$work/usr1.txt" > /dev/null || fail "ranks did not start"
sleep 1
kill -USR1 "$job"
wait "$job" || fail "job stopped with SIGUSR1 exited $?"
[ "$(grep -c '^rank [01] stopped after step .*signal received here: true' "$work/usr1.txt")" = 2 ] || fail "SIGUSR1 to mpirun should reach both ranks"
echo "SIGUSR1 to mpirun: $(grep -c stopped "$work/usr1.txt") ranks stopped cleanly"

# (2) SIGKILL to rank 1: the job must end, non-zero, within 30 s.
timeout 60 "${MPIRUN[@]}" "$BIN/mancs" mpi-check --stop-test --steps 100000 --step-ms 50 > "$work/kill.txt" 2>&1 &
job=$!
pid=$(rank1_pid "$work/kill.txt") || fail "ranks did not start"
sleep 1
start=$(date +%s)
kill -KILL "$pid"
rc=0; wait "$job" || rc=$?
elapsed=$(( $(date +%s) - start ))
[ "$rc" != 0 ] || fail "job with a killed rank exited 0"
[ "$rc" != 124 ] && [ "$elapsed" -le 30 ] || fail "job with a killed rank did not end within 30 s (rc $rc, ${elapsed}s)"
echo "SIGKILL to rank 1: job ended with exit code $rc after ${elapsed}s"
echo "mpi_stop.sh: OK"
