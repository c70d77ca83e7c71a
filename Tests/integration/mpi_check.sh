#!/usr/bin/env bash
# mancs mpi-check on 2 ranks: world, broadcast, allreduce, bandwidth; the hidden
# self-tests (gradient reducer buckets, replica check, stop agreement, checkpoint
# save/resume/broadcast); then `mancs inspect` on the checkpoint it wrote and on
# a truncated copy. Exits 0 on success.
set -euo pipefail
BIN="${MANCS_BIN:?set MANCS_BIN to the directory holding mancs}"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -np 2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "mpi_check.sh: FAIL: $*" >&2; exit 1; }

"${MPIRUN[@]}" "$BIN/mancs" mpi-check --megabytes 16 | tee "$work/basic.txt"
grep -q '^world size 2' "$work/basic.txt" || fail "world size is not 2"
[ "$(grep -c '^  rank [01] on ' "$work/basic.txt")" = 2 ] || fail "both ranks should report their host"
grep -q '^allreduce of 16 MB' "$work/basic.txt" || fail "no bandwidth line"
grep -q '^mpi-check: OK' "$work/basic.txt" || fail "basic checks"

"${MPIRUN[@]}" "$BIN/mancs" mpi-check --self-test --megabytes 1 --checkpoint-run "$work/run" | tee "$work/self.txt"
for what in 'gradient reducer (polling' 'replica check: detects' 'stop request: every rank agreed' 'checkpoint: saved on rank 0' 'mpi-check: OK'; do
    grep -qF "$what" "$work/self.txt" || fail "self-test line missing: $what"
done

ckpt="$work/run/checkpoints/step-00000017.h5"
"$BIN/mancs" inspect "$ckpt" | tee "$work/inspect.txt"
grep -q 'global step:  17' "$work/inspect.txt" || fail "inspect: step"
grep -q 'checksums:    OK' "$work/inspect.txt" || fail "inspect: checksums"
"$BIN/mancs" inspect --json "$ckpt" | grep -q '"global_step":17' || fail "inspect --json"

head -c 20000 "$ckpt" > "$work/truncated.h5"
if "$BIN/mancs" inspect "$work/truncated.h5" > "$work/bad.out" 2> "$work/bad.err"; then fail "inspect accepted a truncated file"; fi
[ "$(wc -l < "$work/bad.err")" = 1 ] || { cat "$work/bad.err"; fail "inspect should fail with one line"; }
echo "inspect of a truncated file: $(cat "$work/bad.err")"
echo "mpi_check.sh: OK"
