#!/usr/bin/env bash
# Progress of the long stages: `mancs extract`, `mancs eval --checkpoint` and the
# trainer's evaluations print one line when extraction starts and one when it
# ends (with images/s) when the output is not a terminal; on a terminal (made
# with `script`) a line redrawn in place with images/s and an ETA.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
make_dataset "$WORK/data" --train-ids 6 --test-ids 6 --images-per-id 6 --cameras 2 --seed 6 --height 64 --width 32
"$MANCS_DIST" --data "$WORK/data" --run-dir "$WORK/run" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 \
    --ids-per-batch 4 --images-per-id 2 --max-steps 2 --loader-threads 1 > "$WORK/train.txt" 2>&1 \
    || { cat "$WORK/train.txt"; fail "training run"; }
check "the trainer's evaluation says when extraction starts" grep -Eq "eval features: [0-9]+ images \.\.\.$" "$WORK/train.txt"
check "and when it ends, with images/s" grep -Eq "eval features: [0-9]+ images in [0-9.]+ s \([0-9.]+ images/s\)" "$WORK/train.txt"
ckpt=$(newest_checkpoint "$WORK/run")
"$MANCS" extract --checkpoint "$ckpt" --data "$WORK/data" --out "$WORK/f.h5" --batch 4 > "$WORK/extract.txt"
cat "$WORK/extract.txt"
# The number of images, from extract's summary ("extract: Q query + G gallery [+ M multi-query] images, ...").
n=$(grep -o '^extract: [0-9 +a-z-]* images,' "$WORK/extract.txt" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i} END {print s}')
[ -n "$n" ] && [ "$n" -gt 0 ] || fail "no summary line"
check "extract, not a terminal: one start line" test "$(grep -c "^extract: $n images \.\.\.$" "$WORK/extract.txt")" -eq 1
check "extract, not a terminal: one end line with images/s" grep -Eq "^extract: $n images in [0-9.]+ s \([0-9.]+ images/s\)$" "$WORK/extract.txt"
check "extract, not a terminal: no redrawn lines" sh -c "! grep -q \$(printf '\r') '$WORK/extract.txt'"
"$MANCS" eval --checkpoint "$ckpt" --data "$WORK/data" --batch 4 > "$WORK/eval.txt"
check "eval --checkpoint: start and end lines" test "$(grep -c "^extract: $n images" "$WORK/eval.txt")" -eq 2

# On a terminal: the redrawn line with images/s and ETA (script gives it a pty).
TERM=xterm script -qec "'$MANCS' extract --checkpoint '$ckpt' --data '$WORK/data' --out '$WORK/g.h5' --batch 1" /dev/null > "$WORK/tty.txt"
check "extract on a terminal: images/s and ETA" grep -Eq "extract: [0-9]+/$n images, [0-9.]+ images/s, ETA" "$WORK/tty.txt"
check "extract on a terminal: redrawn in place" grep -q "$(printf '\r')" "$WORK/tty.txt"
