#!/usr/bin/env bash
# Numeric flags of the mancs subcommands (issue 15, "Settings"): a zero, a
# negative, a NaN, an infinity or an absurd size is refused before anything
# runs, with exit 64 and one error line naming the flag. And one meaning per
# flag (issue 16): --threads has the same help in every command and in
# mancs-dist; bench's old --batch (the batch of all ranks) is --global-batch,
# the old spelling still working with a one-line note.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
trap 'rm -rf "$WORK"' EXIT
touch "$WORK/f.h5"
extract=(extract --checkpoint "$WORK/f.h5" --data "$WORK" --out "$WORK/o.h5")
visualize=(visualize --checkpoint "$WORK/f.h5" --data "$WORK" --out "$WORK/v")
eval=(eval --features "$WORK/f.h5")

# refused FLAG ARGS...: exit 64, an "Error:" line that names --FLAG, no crash.
refused() {
    local flag="$1"; shift
    local status=0
    "$MANCS" "$@" > "$WORK/out.txt" 2> "$WORK/err.txt" || status=$?
    if [ "$status" -ne 64 ] || [ "$(grep -c '^Error: ' "$WORK/err.txt")" -ne 1 ] || ! grep -q -- "^Error: .*--$flag\b" "$WORK/err.txt"; then
        cat "$WORK/err.txt"; fail "mancs $* (exit $status): expected one error naming --$flag, exit 64"
    fi
    echo "ok: mancs $*: $(grep '^Error: ' "$WORK/err.txt")"
}

for v in 0 -1 99999999 nan; do
    refused batch "${extract[@]}" --batch=$v
    refused batch "${visualize[@]}" --batch=$v
    refused batch "${eval[@]}" --batch=$v
    refused global-batch bench --global-batch=$v
done
for v in -1 5000 nan; do
    refused threads "${extract[@]}" --threads=$v
    refused threads "${visualize[@]}" --threads=$v
    refused threads "${eval[@]}" --threads=$v
    refused threads bench --threads=$v
    refused threads check-reference "$WORK/f.h5" --threads=$v
done
for v in 0 -5 100000 inf; do
    refused height "${extract[@]}" --height=$v
    refused width "${visualize[@]}" --width=$v
done
refused loader-threads "${extract[@]}" --loader-threads 0
refused top "${visualize[@]}" --top 0
refused queries "${visualize[@]}" --queries=-3
refused tile-height "${visualize[@]}" --tile-height 4
refused max-rank "${eval[@]}" --max-rank 0
refused block-rows "${eval[@]}" --block-rows=-1
refused k1 "${eval[@]}" --k1 0
refused k2 "${eval[@]}" --k2 100000000
for v in nan inf -0.5 1.5; do refused lambda "${eval[@]}" --lambda=$v; done
refused steps bench --steps 0
refused base-width bench --base-width 0
refused classes bench --classes 1
refused sgemm-size bench --sgemm-size=-1
refused height bench --height 8
refused blocks bench --blocks 1,1,1,0
refused blocks bench --blocks 1,1,1,1000
for v in nan inf -1; do
    refused tolerance diff "$WORK/f.h5" "$WORK/f.h5" --tolerance=$v
    refused absolute-tolerance diff "$WORK/f.h5" "$WORK/f.h5" --absolute-tolerance=$v
done
for v in nan 0 -1 inf; do refused grad-tolerance check-reference "$WORK/f.h5" --grad-tolerance=$v; done
refused cameras synth --out "$WORK/s" --cameras 1
refused train-ids synth --out "$WORK/s" --train-ids=-1
refused images-per-id synth --out "$WORK/s" --images-per-id 0
refused height synth --out "$WORK/s" --height 99999
refused junk synth --out "$WORK/s" --junk=-2
refused cuhk03-classic-split data --data "$WORK" --cuhk03-classic-split 20
refused benchmark data --data "$WORK" --benchmark 0
refused megabytes mpi-check --megabytes 0

# --threads: one help text in every command that has it, and in mancs-dist.
# (awk reads to the end: an early exit would break the pipe under pipefail.)
threads_help() { "$@" --help | awk '/^  --threads/ {on=1} on && /^  --/ && !/^  --threads/ {on=0} on' | tr -s ' \n' ' '; }
reference=$(threads_help "$MANCS_DIST")
[ -n "$reference" ] || fail "mancs-dist --help has no --threads"
for c in extract eval visualize bench check-reference; do
    check "mancs $c --threads: the help of mancs-dist's" test "$(threads_help "$MANCS" "$c")" = "$reference"
done
# --batch: one help text in extract and visualize (eval's adds "Used with --checkpoint.").
batch_help() { "$@" --help | awk '/^  --batch </ {on=1; next} on && /^  --/ {on=0} on' | tr -s ' \n' ' '; }
check "extract and visualize: the same --batch help" test "$(batch_help "$MANCS" extract)" = "$(batch_help "$MANCS" visualize)"
check "bench has no --batch of another meaning" test -z "$(batch_help "$MANCS" bench)"

# bench's old --batch still works, with one note, as --global-batch.
refused global-batch bench --batch 1
check "the old spelling gets a deprecation note" grep -q "^mancs bench: --batch is deprecated; use --global-batch" "$WORK/err.txt"
"$MANCS" bench --batch 4 --height 64 --width 32 --base-width 4 --blocks 1,1,1,1 --classes 4 --steps 1 --sgemm-size 0 \
    --threads 1 --json > "$WORK/bench.json" 2> "$WORK/bench.err" || { cat "$WORK/bench.err"; fail "bench --batch 4"; }
check "bench --batch 4 runs a global batch of 4" \
    python3 -c "import json,sys; assert json.load(open(sys.argv[1]))['config']['batch'] == 4" "$WORK/bench.json"
check "one note line" test "$(grep -c deprecated "$WORK/bench.err")" -eq 1
# A batch of 2 holds one identity: no negative for the triplet loss. One line, exit 2.
status=0
"$MANCS" bench --global-batch 2 --height 64 --width 32 --base-width 4 --blocks 1,1,1,1 --classes 4 --steps 1 \
    --sgemm-size 0 --threads 1 > "$WORK/out.txt" 2> "$WORK/err.txt" || status=$?
check "bench --global-batch 2 exits 2" test "$status" -eq 2
check "bench --global-batch 2: one line saying the triplet loss needs 4 images" \
    test "$(wc -l < "$WORK/err.txt")" -eq 1 -a -n "$(grep 'needs at least 4' "$WORK/err.txt")"
