#!/usr/bin/env bash
# `mancs synth` then `mancs data --verify --json` on its output: the counts it
# reports are exactly the counts synth says it wrote; the same seed writes the
# same bytes; damaged files are found by --verify.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
"$MANCS" synth --out "$WORK/a" --train-ids 20 --test-ids 10 --images-per-id 5 --cameras 3 --seed 4 > "$WORK/synth.txt"
cat "$WORK/synth.txt"
"$MANCS" data --data "$WORK/a" --dataset market1501 --verify --json > "$WORK/data.json"
cat "$WORK/data.json"; echo

# synth's summary lines: "train   (...): 20 ids, 100 images, 3 cameras"
counts() { grep "^$1 " "$WORK/synth.txt" | grep -o '[0-9]* ids, [0-9]* images, [0-9]* cameras' | tr -dc '0-9 \n' | tr -s ' '; }
json_counts() {
    grep -o "\"$1\":{[^}]*}" "$WORK/data.json" | tr ',' '\n' | \
        awk -F: '/ids/ {i=$NF} /images/ {m=$NF} /cameras/ {c=$NF} END {gsub(/[^0-9]/,"",i); gsub(/[^0-9]/,"",m); gsub(/[^0-9]/,"",c); print i, m, c}'
}
for split in train query gallery; do
    s=$(counts "$split" | xargs); d=$(json_counts "$split" | xargs)
    echo "$split: synth says '$s', mancs data says '$d'"
    check "$split counts agree" test -n "$s" -a "$s" = "$d"
done
check "no file skipped" grep -q '"skipped":\[\]' "$WORK/data.json"

"$MANCS" synth --out "$WORK/b" --train-ids 20 --test-ids 10 --images-per-id 5 --cameras 3 --seed 4 > /dev/null
check "the same seed writes identical files" diff -r -q "$WORK/a" "$WORK/b"

# A truncated JPEG is found by --verify and named.
victim=$(ls "$WORK/a/bounding_box_train" | head -n 1)
truncate -s 300 "$WORK/a/bounding_box_train/$victim"
"$MANCS" data --data "$WORK/a" --dataset market1501 --verify --json > "$WORK/bad.json" || true
check "--verify names the truncated image" grep -q "$victim" "$WORK/bad.json"

# A missing folder: one clear error naming the path.
status=0; "$MANCS" data --data "$WORK/nowhere" --dataset market1501 2> "$WORK/err.txt" || status=$?
check "missing folder: non-zero exit" test "$status" -ne 0
check "missing folder: error names the path" grep -q "$WORK/nowhere" "$WORK/err.txt"
rm -rf "$WORK"
