#!/usr/bin/env bash
# MSMT17 (V1 and V2 layouts, train and train+val) and the generic list dataset:
# `mancs synth --layout` writes them, `mancs data --verify --json` reads back the
# counts synth reports, a list made from a Market-1501 folder reads as the folder
# does, hostile or missing list files are one error naming file and line, and a
# short 2-rank training, `mancs eval --checkpoint` and a 2-rank `mancs extract`
# run on each.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
size=(--train-ids 8 --test-ids 4 --images-per-id 4 --cameras 3 --seed 5 --height 64 --width 32)

# synth's summary line "NAME (...): I ids, M images, C cameras" of a split, as "I M C".
counts() { grep "^$2 " "$1" | grep -o '[0-9]* ids, [0-9]* images, [0-9]* cameras' | tr -dc '0-9 \n' | tr -s ' ' | xargs; }
# The same three numbers of a split in `mancs data --json`.
json_counts() {
    grep -o "\"$2\":{[^}]*}" "$1" | tr ',' '\n' | \
        awk -F: '/ids/ {i=$NF} /images/ {m=$NF} /cameras/ {c=$NF} END {gsub(/[^0-9]/,"",i); gsub(/[^0-9]/,"",m); gsub(/[^0-9]/,"",c); print i, m, c}'
}
# Checks that `mancs data --dataset $2` on $1 reads the counts synth wrote ($3).
same_counts() {
    local dir="$1" dataset="$2" synth="$3" json="$WORK/$2.$RANDOM.json"
    "$MANCS" data --data "$dir" --dataset "$dataset" --verify --json > "$json"
    for split in train query gallery; do
        check "$dataset $split: synth says '$(counts "$synth" $split)', mancs data says '$(json_counts "$json" $split)'" \
            test -n "$(counts "$synth" $split)" -a "$(counts "$synth" $split)" = "$(json_counts "$json" $split)"
    done
    check "$dataset: no file skipped" grep -q '"skipped":\[\]' "$json"
}

# 1. MSMT17, both releases: list_train.txt alone, and with list_val.txt.
for v in v1 v2; do
    "$MANCS" synth --out "$WORK/msmt17-$v" --layout "msmt17-$v" "${size[@]}" > "$WORK/synth-$v.txt"
    cat "$WORK/synth-$v.txt"
    release=$([ $v = v1 ] && echo MSMT17_V1 || echo MSMT17_V2)
    check "$release written with its four lists" test -s "$WORK/msmt17-$v/$release/list_val.txt" -a -s "$WORK/msmt17-$v/$release/list_gallery.txt"
    same_counts "$WORK/msmt17-$v" msmt17 "$WORK/synth-$v.txt"
    "$MANCS" data --data "$WORK/msmt17-$v" --dataset msmt17-trainval --json > "$WORK/tv-$v.json"
    read -r _ train _ <<< "$(counts "$WORK/synth-$v.txt" train)"; read -r _ val _ <<< "$(counts "$WORK/synth-$v.txt" val)"
    read -r _ both _ <<< "$(json_counts "$WORK/tv-$v.json" train)"
    check "msmt17-trainval ($release) trains on list_train + list_val: $train + $val = $both" test "$((train + val))" -eq "$both"
done
check "V1 and V2 differ only in folder names" diff <(cd "$WORK/msmt17-v1/MSMT17_V1" && cat list_*.txt) <(cd "$WORK/msmt17-v2/MSMT17_V2" && cat list_*.txt)

# 2. The list layout, given as its folder or as the list file.
"$MANCS" synth --out "$WORK/list" --layout list "${size[@]}" > "$WORK/synth-list.txt"
same_counts "$WORK/list" list "$WORK/synth-list.txt"
same_counts "$WORK/list/list.txt" list "$WORK/synth-list.txt"

# 3. A list written from a Market-1501 folder by a shell one-liner (pid and
#    camera from the names) reads exactly as the folder itself.
"$MANCS" synth --out "$WORK/market" "${size[@]}" > /dev/null
(cd "$WORK/market" && for split in bounding_box_train:train query:query bounding_box_test:gallery; do
    ls "${split%%:*}" | awk -v d="${split%%:*}" -v s="${split##*:}" -F_ '{c=substr($2, 2, 1); print d "/" $0, $1 + 0, c - 1, s}'
done > list.txt)
"$MANCS" data --data "$WORK/market" --dataset market1501 --json > "$WORK/m.json"
"$MANCS" data --data "$WORK/market/list.txt" --dataset list --json > "$WORK/l.json"
check "a list of a Market-1501 folder reads as the folder" diff "$WORK/m.json" "$WORK/l.json"

# 4. Hostile and missing list files: non-zero exit, one line naming file and line.
cp "$WORK/list/list.txt" "$WORK/list/bad.txt"
echo "../../etc/passwd.jpg 1 0 train" >> "$WORK/list/bad.txt"
line=$(wc -l < "$WORK/list/bad.txt")
status=0; "$MANCS" data --data "$WORK/list/bad.txt" --dataset list 2> "$WORK/err.txt" || status=$?
cat "$WORK/err.txt"
check "a '..' path: non-zero exit" test "$status" -ne 0
check "a '..' path: one line naming file and line $line" test "$(grep -c "$WORK/list/bad.txt line $line: .* leaves the dataset folder" "$WORK/err.txt")" -eq 1 -a "$(wc -l < "$WORK/err.txt")" -eq 1
mv "$WORK/msmt17-v1/MSMT17_V1/list_query.txt" "$WORK/list_query.txt"
status=0; "$MANCS" data --data "$WORK/msmt17-v1" --dataset msmt17 2> "$WORK/err.txt" || status=$?
cat "$WORK/err.txt"
check "missing list_query.txt: non-zero exit, named" test "$status" -ne 0 -a -n "$(grep "MSMT17_V1/list_query.txt: missing list file" "$WORK/err.txt")"
mv "$WORK/list_query.txt" "$WORK/msmt17-v1/MSMT17_V1/list_query.txt"

# 5. Training (2 ranks, a few steps, evaluation at the end), evaluation and
#    2-rank extraction on MSMT17 V2 with train+val, and on the list dataset.
model=(--base-width 8 --blocks 1,1,1,1 --height 64 --width 32)
for case in "msmt17-trainval|$WORK/msmt17-v2" "list|$WORK/list/list.txt"; do
    IFS='|' read -r dataset data <<< "$case"
    run="$WORK/run-$dataset"
    mpi -np 2 "$MANCS_DIST" --data "$data" --dataset "$dataset" "${model[@]}" --ids-per-batch 4 --images-per-id 2 \
        --seed 3 --loader-threads 1 --log-every 1 --max-steps 4 --run-dir "$run" > "$run.log" 2>&1 || { cat "$run.log"; fail "$dataset: 2-rank training"; }
    check "$dataset: 2 ranks trained, replicas identical" grep -q "replicas identical on 2 rank(s)" "$run.log"
    check "$dataset: the trainer evaluated (rank-1 and mAP in metrics.jsonl)" grep -q '"kind":"eval".*"mAP"' "$run/metrics.jsonl"
    ckpt=$(newest_checkpoint "$run")
    "$MANCS" eval --checkpoint "$ckpt" --data "$data" --dataset "$dataset" --save-features "$WORK/feats1-$dataset.h5" --json \
        > "$WORK/eval-$dataset.json" 2> "$WORK/eval-$dataset.err" || { cat "$WORK/eval-$dataset.err"; fail "$dataset: mancs eval --checkpoint"; }
    cat "$WORK/eval-$dataset.json"; echo
    queries=$("$MANCS" data --data "$data" --dataset "$dataset" --json | grep -o '"query":{[^}]*}' | grep -o '"images":[0-9]*' | cut -d: -f2)
    check "$dataset: mancs eval --checkpoint scores all $queries queries (rank-1, mAP)" \
        grep -q "\"mAP\":[0-9.e-]*,.*\"num_query\":$queries,.*\"rank1\":[0-9.e-]*," "$WORK/eval-$dataset.json"
    mpi -np 2 "$MANCS" extract --checkpoint "$ckpt" --data "$data" --dataset "$dataset" --batch 8 --threads 1 \
        --out "$WORK/feats2-$dataset.h5" > "$WORK/extract-$dataset.log" 2>&1 || { cat "$WORK/extract-$dataset.log"; fail "$dataset: 2-rank extract"; }
    check "$dataset: mpirun -np 2 mancs extract = the features mancs eval extracted (1e-5)" \
        h5diff -d 1e-5 "$WORK/feats1-$dataset.h5" "$WORK/feats2-$dataset.h5"
done
rm -rf "$WORK"
