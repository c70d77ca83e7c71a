#!/usr/bin/env bash
# Hostile and broken files (issue 15): a checkpoint with a hard-link cycle or a
# string-array `format` attribute gets one clear error from `mancs inspect`
# (no hang, no crash), files that crash libhdf5 itself are refused through a
# probe child (FileProbe), `--resume auto` falls back to the older good
# checkpoint past both, and retention never deletes what a run just wrote.
# Hostile files are made with h5py (launch/test installs python3-h5py; pip here if missing).
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
python3 -c "import h5py" 2>/dev/null || python3 -m pip install -q h5py >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages h5py >/dev/null
# mpi (lib/common.sh) under a time limit: a hang is a failure, not a stuck suite.
mpi_within() { local limit="$1"; shift; timeout "$limit" mpirun --allow-run-as-root --oversubscribe --bind-to none "$@"; }
make_dataset "$WORK/data" --train-ids 8 --test-ids 4 --images-per-id 4 --cameras 2 --seed 1 --height 32 --width 16
common=(--data "$WORK/data" --base-width 4 --blocks 1,1,1,1 --height 32 --width 16 --ids-per-batch 4
        --images-per-id 2 --seed 7 --loader-threads 1 --eval-every 1000 --checkpoint-every 2 --threads 1)
run="$WORK/run"
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" --max-steps 8 > "$WORK/a.log" 2>&1 || { cat "$WORK/a.log"; fail "first run"; }
ckpts="$run/checkpoints"
check "trained to step 8" test -f "$ckpts/step-00000008.h5"

# 1. A hard link back to the root, as the newest checkpoint.
cp "$ckpts/step-00000008.h5" "$ckpts/step-00000010.h5"
python3 - "$ckpts/step-00000010.h5" <<'PY'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    f.attrs["global_step"] = np.int64(10)
    f["model/loop"] = f["/"]
PY
# And newer still, a file on which libhdf5 1.10.8 itself segfaults (a probe child reads it first).
crashes="$(cd "$(dirname "$0")/../.." && pwd)/Tests/fuzz/regressions/libhdf5-crashes"
cp "$crashes/dense-group-iterate-bad-free.h5" "$ckpts/step-00000011.h5"
status=0
timeout "${INSPECT_TIMEOUT:-60}" "$MANCS" inspect "$ckpts/step-00000010.h5" > "$WORK/i.log" 2>&1 || status=$?
check "inspect of a link cycle ends with exit 1, not a hang or a crash (got $status)" test "$status" = 1
check "inspect names the cycle" grep -q "cycle" "$WORK/i.log"
status=0
mpi_within "${RESUME_TIMEOUT:-300}" -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" --max-steps 9 > "$WORK/b.log" 2>&1 || status=$?
[ "$status" = 0 ] || { cat "$WORK/b.log"; fail "resume auto past a link cycle (exit $status)"; }
check "resume auto skipped the cycle and resumed from step 8" grep -q "resumed from .*step-00000008.h5 at step 8" "$WORK/b.log"
check "resume auto skipped the file that crashes libhdf5, saying so" grep -q "skipping .*step-00000011.h5: .*crashed libhdf5 (signal" "$WORK/b.log"
check "the file that crashes libhdf5 is kept" test -f "$ckpts/step-00000011.h5"
check "the damaged newer file is kept (retention deletes only this run's sequence)" test -f "$ckpts/step-00000010.h5"
check "the new checkpoint is kept" test -f "$ckpts/step-00000009.h5"

# 2. `format` as a variable-length string array of 64 elements.
cp "$ckpts/step-00000008.h5" "$WORK/format64.h5"
python3 - "$WORK/format64.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    del f.attrs["format"]
    f.attrs.create("format", ["mancs-checkpoint"] * 64, dtype=h5py.string_dtype())
PY
status=0
timeout "${INSPECT_TIMEOUT:-60}" "$MANCS" inspect "$WORK/format64.h5" > "$WORK/f.log" 2>&1 || status=$?
check "inspect of a 64-string format attribute: exit 1, no crash (got $status)" test "$status" = 1
check "the error names the attribute" grep -q "format" "$WORK/f.log"

# 2b. A fuzzer's find: a variable-length string attribute whose global-heap
# object claims 4 GiB (libhdf5 1.10.8's own reader copied past its buffers: a
# segmentation fault in `mancs inspect`). One error line naming the file.
bad="$(cd "$(dirname "$0")/../.." && pwd)/Tests/fuzz/regressions/hdf5/h5hg-read-vlen-attribute-segfault.h5"
status=0
timeout "${INSPECT_TIMEOUT:-60}" "$MANCS" inspect "$bad" > "$WORK/h.log" 2>&1 || status=$?
check "inspect of a damaged global heap: exit 1, no crash (got $status)" test "$status" = 1
check "one error line naming the file and the heap" bash -c "[ \$(wc -l < '$WORK/h.log') = 1 ] && grep -q 'h5hg-read-vlen-attribute-segfault.h5.*heap' '$WORK/h.log'"

# 2c. Files on which libhdf5 1.10.8 itself crashes (segmentation fault, exit
# 139 before the probe): `mancs inspect`, `mancs eval --features` and
# `mancs diff` refuse them with one line naming the file; so do `--resume
# FILE` (on every rank), `mancs extract --checkpoint` and `--pretrained`.
# (eval --features on the dense-group file is no crash: "missing group /query".)
for case in "inspect|dense-group-iterate-bad-free|1" "inspect|local-heap-lookup-null-memcpy|1" \
            "eval --features|local-heap-lookup-null-memcpy|1" \
            "diff $crashes/dense-group-iterate-bad-free.h5|dense-group-iterate-bad-free|2" \
            "diff $crashes/local-heap-lookup-null-memcpy.h5|local-heap-lookup-null-memcpy|2"; do
    IFS='|' read -r sub f want <<< "$case"
    status=0
    # shellcheck disable=SC2086  # $sub is a word list on purpose
    timeout "${INSPECT_TIMEOUT:-90}" "$MANCS" $sub "$crashes/$f.h5" > "$WORK/p.log" 2>&1 || status=$?
    check "${sub%% /*} $f.h5: exit $want, no crash (got $status)" test "$status" = "$want"
    check "${sub%% /*} $f.h5: one line naming the file" bash -c "[ \$(wc -l < '$WORK/p.log') = 1 ] && grep -q '$f.h5: damaged HDF5 file: reading it crashed libhdf5 (signal 11); refused' '$WORK/p.log'"
done
status=0
mpi_within 120 -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/r2" --resume "$ckpts/step-00000011.h5" --max-steps 12 > "$WORK/rf.log" 2>&1 || status=$?
check "--resume FILE that crashes libhdf5: exit 1 (got $status)" test "$status" = 1
check "--resume FILE that crashes libhdf5: one error line" test "$(grep -c "step-00000011.h5: damaged HDF5 file: reading it crashed libhdf5" "$WORK/rf.log")" -eq 1
status=0
"$MANCS" extract --checkpoint "$crashes/dense-group-iterate-bad-free.h5" --data "$WORK/data" --out "$WORK/x.h5" > "$WORK/x.log" 2>&1 || status=$?
check "extract --checkpoint that crashes libhdf5: exit 1, one line (got $status)" \
    bash -c "[ '$status' = 1 ] && [ \$(wc -l < '$WORK/x.log') = 1 ] && grep -q 'crashed libhdf5 (signal 11); refused' '$WORK/x.log'"
status=0
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/pre" --max-steps 1 --pretrained "$crashes/dense-group-iterate-bad-free.h5" > "$WORK/pre.log" 2>&1 || status=$?
check "--pretrained FILE.h5 that crashes libhdf5: exit 1 (got $status)" test "$status" = 1
check "--pretrained FILE.h5 that crashes libhdf5: one error line" test "$(grep -c "^mancs-dist: error: --pretrained .*crashed libhdf5 (signal 11); refused" "$WORK/pre.log")" -eq 1
for sub in inspect "eval --features"; do
    status=0
    # shellcheck disable=SC2086
    { MANCS_PROBE_FILES=0 "$MANCS" $sub "$crashes/local-heap-lookup-null-memcpy.h5" > /dev/null; } 2>/dev/null || status=$?
    check "MANCS_PROBE_FILES=0 turns the probe off: $sub crashes in libhdf5 again (got $status)" test "$status" -ge 128
done

# 2d. The probe child's memory limit (default: the larger of 4 GiB and 4 times
# the file): a good checkpoint passes under the default; with the limit forced
# down to 1 MiB the file is refused in one line, and the parent does not read
# it itself (it would have no limit).
good="$ckpts/step-00000008.h5"
check "a good checkpoint passes the probe under the default memory limit" bash -c "\"$MANCS\" inspect \"$good\" > /dev/null"
for case in "inspect|1" "diff $good|2"; do
    IFS='|' read -r sub want <<< "$case"
    status=0
    # shellcheck disable=SC2086
    MANCS_PROBE_MEMORY_MB=1 timeout 30 "$MANCS" $sub "$good" > "$WORK/m.log" 2>&1 || status=$?
    check "${sub%% /*} under a 1 MiB probe limit: exit $want (got $status)" test "$status" = "$want"
    check "${sub%% /*} under a 1 MiB probe limit: one line" bash -c "[ \$(wc -l < '$WORK/m.log') = 1 ] && grep -q 'step-00000008.h5: damaged HDF5 file: reading it needed more than 1 MiB; refused' '$WORK/m.log'"
done

# 2e. A FIFO (or a folder) instead of a file: refused at once, naming it, by
# every command that opens an HDF5 file from elsewhere (libhdf5's open of a
# FIFO waits for a writer: before, the probe's 60 s timeout).
mkfifo "$WORK/fifo.h5"
for case in "inspect|1" "eval --features|1" "diff $good|2" "extract --data $WORK/data --out $WORK/fx.h5 --checkpoint|1" \
            "export --out $WORK/fx.safetensors --checkpoint|1"; do
    IFS='|' read -r sub want <<< "$case"
    status=0
    start=$SECONDS
    # shellcheck disable=SC2086
    timeout 30 "$MANCS" $sub "$WORK/fifo.h5" > "$WORK/q.log" 2>&1 || status=$?
    check "${sub%% *} on a FIFO: exit $want (got $status)" test "$status" = "$want"
    check "${sub%% *} on a FIFO: within 10 s" test $((SECONDS - start)) -lt 10
    check "${sub%% *} on a FIFO: one line, not a regular file" bash -c "[ \$(wc -l < '$WORK/q.log') = 1 ] && grep -q 'fifo.h5: not a regular file' '$WORK/q.log'"
done
status=0
timeout 30 "$MANCS" inspect "$WORK/data" > "$WORK/q.log" 2>&1 || status=$?
check "inspect of a folder: exit 1, not a regular file (got $status)" bash -c "[ '$status' = 1 ] && grep -q 'not a regular file' '$WORK/q.log'"
rm -f "$WORK/fifo.h5"

# 3. A fresh run in a directory trained further keeps the checkpoint it writes.
rm "$ckpts/step-00000010.h5" "$ckpts/step-00000011.h5"
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" --resume none --max-steps 2 > "$WORK/c.log" 2>&1 || { cat "$WORK/c.log"; fail "fresh run"; }
check "--resume none --max-steps 2 after step 9: step-2 is kept" test -f "$ckpts/step-00000002.h5"
check "and the earlier run's newer checkpoints too" test -f "$ckpts/step-00000009.h5"

# 4. Resume checks the run's contract before reading tensors: each refusal lists the keys.
for case in "--height 48|height: 32 -> 48" "--images-per-id 4|images-per-id: 2 -> 4" \
            "--lr 0.002|--resume-force" "--epochs 7 --lr 0.002|epochs"; do
    IFS='|' read -r flags pattern <<< "$case"
    status=0
    # shellcheck disable=SC2086  # $flags is a word list on purpose
    mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" $flags --max-steps 12 > "$WORK/r.log" 2>&1 || status=$?
    check "resume with $flags: refused (exit $status)" test "$status" = 1
    check "resume with $flags: one error line naming '$pattern'" test "$(grep -c -- "^mancs-dist: error.*$pattern" "$WORK/r.log")" -eq 1
done
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" --lr 0.002 --resume-force --max-steps 10 > "$WORK/r.log" 2>&1 \
    || { cat "$WORK/r.log"; fail "--resume-force with another --lr"; }
check "--resume-force continues with another --lr" grep -q "resumed from .*step-00000009.h5 at step 9" "$WORK/r.log"

# 5. A second job in a run directory that is in use is refused, on every rank, at once.
flock "$run/.lock" sleep 60 & holder=$!
sleep 1
status=0
mpi_within 120 -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$run" --max-steps 12 > "$WORK/l.log" 2>&1 || status=$?
kill "$holder" 2>/dev/null || true; wait "$holder" 2>/dev/null || true
check "second job: exit 1 (got $status)" test "$status" = 1
check "second job: one line saying the directory is in use" test "$(grep -c "is in use by another job" "$WORK/l.log")" -eq 1

# 6. Numeric flags out of range: one message naming the flag, no trap.
for case in "--check-replicas-every 0|--check-replicas-every" "--seed=-1|--seed" "--lr nan|--lr" \
            "--keep-checkpoints 0|--keep-checkpoints" "--clip-norm inf|--clip-norm"; do
    IFS='|' read -r flags pattern <<< "$case"
    status=0
    # shellcheck disable=SC2086
    "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/flags" $flags --max-steps 2 > "$WORK/s.log" 2>&1 || status=$?
    check "$flags: refused with a usage error (exit $status)" test "$status" -ge 1 -a "$status" -lt 128
    check "$flags: the message names $pattern" grep -q -- "$pattern" "$WORK/s.log"
done

# 8. A second SIGTERM ends the process at once; nothing half-written is left in view.
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/t" --max-steps 100000 --checkpoint-every 3 > "$WORK/t.log" 2>&1 &
job=$!
wait_for_train_lines "$WORK/t" 4
rank=$(rank_pid "$WORK/t")
start=$(date +%s%N)
kill -TERM "$rank"; sleep 0.05; kill -TERM "$rank"
status=0; timeout 60 tail --pid=$job -f /dev/null || true; wait $job || status=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "two SIGTERMs: job ended after $elapsed_ms ms (exit $status)"
check "second SIGTERM: the job ends within 5 s" test "$elapsed_ms" -lt 5000
for f in "$WORK"/t/checkpoints/step-*.h5; do
    [ -e "$f" ] || continue
    check "second SIGTERM: $(basename "$f") is complete" bash -c "\"$MANCS\" inspect \"$f\" >/dev/null"
done

# 7. A full disk (a small tmpfs, when this machine lets us mount one): saving
#    fails with one clear error, and the checkpoints already there stay intact.
mkdir -p "$WORK/full"
if mount -t tmpfs -o size=4m tmpfs "$WORK/full" 2>/dev/null; then
    trap 'umount "$WORK/full" 2>/dev/null || true' EXIT
    mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/full/run" --max-steps 2 > "$WORK/d1.log" 2>&1 || { cat "$WORK/d1.log"; fail "run on the tmpfs"; }
    free_kb=$(df -k --output=avail "$WORK/full" | tail -n 1)
    fallocate -l $(((free_kb - 48) * 1024)) "$WORK/full/filler"
    status=0
    mpi_within 300 -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/full/run" --max-steps 4 > "$WORK/d2.log" 2>&1 || status=$?
    check "full disk: the run stops with an error (exit $status)" test "$status" -ne 0 -a "$status" -ne 124
    check "full disk: the error says the disk is full" grep -qi "no space left\|disk full\|cannot write\|write failed" "$WORK/d2.log"
    check "full disk: no trap or crash" bash -c "! grep -q 'Fatal error\|Segmentation\|Illegal instruction' '$WORK/d2.log'"
    check "full disk: the older checkpoint is intact" bash -c "\"$MANCS\" inspect \"$WORK/full/run/checkpoints/step-00000002.h5\" >/dev/null"
    check "full disk: no temporary left behind" test -z "$(ls -A "$WORK/full/run/checkpoints" | grep -v '^step-00000002.h5$' || true)"
    umount "$WORK/full"; trap - EXIT
else
    echo "skip: cannot mount a tmpfs here (full-disk case)"
fi
rm -rf "$WORK"
