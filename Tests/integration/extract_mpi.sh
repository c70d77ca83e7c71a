#!/usr/bin/env bash
# `mancs extract` under `mpirun -np 2` writes the same features file as one
# process (features within 1e-6, same pids/camids/paths, same order), on a
# synthetic dataset with a checkpoint from two steps of `mancs-dist`. Also: a
# weights-only copy of the checkpoint (/model and /buffers, as h5py would write
# it) extracts the same features given the input size, and a checkpoint that
# does not fit fails on every rank with one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
bindir="${MANCS_BIN:-$(swift build -c release --show-bin-path)}"
mancs="$bindir/mancs"; dist="$bindir/mancs-dist"
for b in "$mancs" "$dist"; do [ -x "$b" ] || { echo "extract_mpi: no binary at $b"; exit 1; }; done
mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "extract_mpi: FAIL: $*"; exit 1; }

"$mancs" synth --out "$tmp/data" --train-ids 6 --test-ids 4 --images-per-id 4 >"$tmp/synth.log" 2>&1 \
    || { cat "$tmp/synth.log"; fail "mancs synth could not make the dataset"; }
"$dist" --data "$tmp/data" --run-dir "$tmp/run" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 \
    --ids-per-batch 4 --images-per-id 2 --max-steps 2 >"$tmp/train.log" 2>&1 \
    || { cat "$tmp/train.log"; fail "mancs-dist could not make a checkpoint"; }
ckpt=$(ls "$tmp"/run/checkpoints/*.h5 2>/dev/null | tail -n 1)
[ -n "$ckpt" ] || fail "no checkpoint in $tmp/run/checkpoints"

common=(--checkpoint "$ckpt" --data "$tmp/data" --dataset market1501 --batch 3)
"$mancs" extract "${common[@]}" --out "$tmp/one.h5" || fail "extract in one process"
"${mpirun[@]}" "$mancs" extract "${common[@]}" --out "$tmp/two.h5" --threads 1 >"$tmp/two.log" 2>&1 \
    || { cat "$tmp/two.log"; fail "extract under mpirun -np 2"; }
cat "$tmp/two.log"
[ "$(grep -c '^extract:' "$tmp/two.log")" = 1 ] || fail "expected one summary line (rank 0) under mpirun"
h5dump -H "$tmp/one.h5" | grep -q 'DATASET "features"' || fail "one.h5 has no features"
h5dump -d /query/features -H "$tmp/one.h5" | grep -q 'DATASPACE  SIMPLE { ( [0-9]*, 256 )' \
    || fail "/query/features is not [N, 256]"
h5diff -d 1e-6 "$tmp/one.h5" "$tmp/two.h5" || fail "features of 2 ranks differ from 1 process (h5diff above)"
echo "ok   mpirun -np 2 features = one process"

# A weights-only file: the same features with the input size given by flags.
h5copy -i "$ckpt" -o "$tmp/weights.h5" -s /model -d /model && h5copy -i "$ckpt" -o "$tmp/weights.h5" -s /buffers -d /buffers \
    || fail "h5copy"
"${mpirun[@]}" "$mancs" extract --checkpoint "$tmp/weights.h5" --data "$tmp/data" --dataset market1501 --batch 3 \
    --height 64 --width 32 --out "$tmp/weights_feats.h5" --threads 1 >/dev/null || fail "extract from a weights-only file"
h5diff -d 1e-6 "$tmp/one.h5" "$tmp/weights_feats.h5" || fail "weights-only file gives other features"
echo "ok   weights-only file"

# A file that does not fit (heads.rank.fc.weight holding a conv weight): a
# non-zero exit and one error line (from rank 0), not a hang or a crash.
for n in $(h5ls "$ckpt/model" | awk '{print $1}'); do
    src=$n; [ "$n" = heads.rank.fc.weight ] && src=backbone.conv1.weight
    h5copy -p -i "$ckpt" -o "$tmp/bad.h5" -s "/model/$src" -d "/model/$n" || fail "h5copy $n"
done
h5copy -i "$ckpt" -o "$tmp/bad.h5" -s /buffers -d /buffers || fail "h5copy buffers"
"${mpirun[@]}" "$mancs" extract --checkpoint "$tmp/bad.h5" --data "$tmp/data" --height 64 --width 32 \
    --out "$tmp/x.h5" >"$tmp/bad.out" 2>"$tmp/bad.err"
rc=$?
[ "$rc" != 0 ] || fail "extract with a checkpoint that does not fit succeeded"
[ ! -e "$tmp/x.h5" ] || fail "a features file was written anyway"
grep 'mancs extract:' "$tmp/bad.err"
[ "$(grep -c 'mancs extract:' "$tmp/bad.err")" = 1 ] || { cat "$tmp/bad.err"; fail "expected one error line (rank 0)"; }
grep -q 'heads.rank.fc.weight' "$tmp/bad.err" || fail "the error does not name the tensor"
echo "ok   a checkpoint that does not fit: one error line"
echo "extract_mpi: OK"
