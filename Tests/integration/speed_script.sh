#!/usr/bin/env bash
# launch/speed (the alternating mancs-vs-PyTorch series behind docs/performance.md)
# for real on a tiny geometry, mancs only: one row per run with the bench's own
# figures, the summary lines, and clear errors for bad options.
source "$(dirname "$0")/lib/common.sh"
trap 'rm -rf "$WORK"' EXIT
cd "$(dirname "$0")/../.."

tiny=(--global-batch 4 --height 64 --width 32 --base-width 8 --blocks 1,1,1,1 --classes 4 --sgemm-size 256)
launch/speed --runs 2 --steps 2 --no-torch --dir "$WORK/speed" -- "${tiny[@]}" > "$WORK/out.txt" \
    || { cat "$WORK/out.txt"; fail "launch/speed on a tiny geometry"; }
cat "$WORK/out.txt"
check "one JSON per run" test -s "$WORK/speed/run1.mancs.json" -a -s "$WORK/speed/run2.mancs.json"
check "the header and two rows" test "$(grep -c '^| [12] |' "$WORK/out.txt")" = 2
# Each row carries that run's own figures: two step times, its ratio and its peak.
row1=$(grep '^| 1 |' "$WORK/out.txt")
ratio=$(python3 -c "import json; print(f\"{json.load(open('$WORK/speed/run1.mancs.json'))['gemm_efficiency']:.3f}\")")
peak=$(python3 -c "import json; print(f\"{json.load(open('$WORK/speed/run1.mancs.json'))['peak_rss_bytes'] // 1024:,}\")")
check "row 1 has run 1's ratio ($ratio) and peak ($peak kB)" grep -q "| $ratio | $peak |" <<< "$row1"
check "row 1 has two step times" test "$(awk -F'|' '{print $4}' <<< "$row1" | wc -w)" = 2
check "the summary names the ratio range and the 0.75 count" grep -q "at least 0.75 in [0-2] of 2" "$WORK/out.txt"
check "the summary checks the 3 GiB peak" grep -q "within 3 GiB" "$WORK/out.txt"
check "mancs only: no PyTorch column" bash -c "! grep -q 'x PyTorch' '$WORK/out.txt'"

if launch/speed --runs 0 2> "$WORK/err.txt"; then fail "--runs 0 accepted"; fi
check "--runs 0: a clear error" grep -q "runs must be a positive integer, got '0'" "$WORK/err.txt"
if launch/speed --torch-size "64 256" 2> "$WORK/err.txt"; then fail "a short --torch-size accepted"; fi
check "--torch-size: a clear error" grep -q "torch-size needs four positive integers" "$WORK/err.txt"
if launch/speed --fast 2> "$WORK/err.txt"; then fail "an unknown option accepted"; fi
check "unknown option: named" grep -q "unknown option '--fast'" "$WORK/err.txt"
