#!/usr/bin/env bash
# Test-time options end to end: mancs-dist's --eval-flip/--eval-distance/
# --eval-rerank evaluations are logged (plain and re-ranked) and agree with
# `mancs eval --checkpoint` given the same options; `mancs extract --flip` then
# `eval --features` equals `eval --checkpoint --flip`; `extract --normalize`
# ranks like --distance cosine; bad combinations are one clear error.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
make_dataset "$WORK/data" --train-ids 8 --test-ids 6 --images-per-id 5 --cameras 3 --seed 2 --height 64 --width 32
"$MANCS_DIST" --data "$WORK/data" --run-dir "$WORK/run" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 \
    --ids-per-batch 4 --images-per-id 2 --max-steps 3 --loader-threads 1 \
    --eval-flip --eval-distance cosine --eval-rerank > "$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; fail "training run"; }
grep "eval (" "$WORK/train.log"
check "the final evaluation is logged re-ranked too" grep -q "eval (final, step 3, re-ranked)" "$WORK/train.log"
check "metrics.jsonl has the re-ranked numbers" grep -q '"rerank_mAP"' "$WORK/run/metrics.jsonl"
check "config.yaml records the evaluation options" grep -q "eval-rerank: true" "$WORK/run/config.yaml"
ckpt=$(newest_checkpoint "$WORK/run")

# The trainer's final numbers = mancs eval's with the same options.
"$MANCS" eval --checkpoint "$ckpt" --data "$WORK/data" --flip --distance cosine --json-out "$WORK/plain.json" > /dev/null
"$MANCS" eval --checkpoint "$ckpt" --data "$WORK/data" --flip --distance cosine --rerank --json-out "$WORK/rr.json" > "$WORK/rr.txt"
cat "$WORK/rr.txt"
check "eval's title names the options" grep -q "flip, cosine, re-ranked (k1 20, k2 6, lambda 0.3)" "$WORK/rr.txt"
python3 - "$WORK" <<'PY' || fail "trainer and mancs eval disagree"
import json, sys
w = sys.argv[1]
final = [json.loads(l) for l in open(f"{w}/run/metrics.jsonl") if '"kind":"eval"' in l][-1]
plain, rr = json.load(open(f"{w}/plain.json")), json.load(open(f"{w}/rr.json"))
pairs = [(final["mAP"], plain["mAP"]), (final["rank1"], plain["rank1"]),
         (final["rerank_mAP"], rr["mAP"]), (final["rerank_rank1"], rr["rank1"]), (final["rerank_mINP"], rr["mINP"])]
print("trainer vs mancs eval:", pairs)
assert all(abs(a - b) <= 1e-4 for a, b in pairs)
PY
echo "ok: trainer's evaluation = mancs eval --checkpoint with the same options"

# extract --flip, then eval --features: the same as eval --checkpoint --flip.
"$MANCS" extract --checkpoint "$ckpt" --data "$WORK/data" --out "$WORK/flip.h5" --flip > /dev/null
"$MANCS" eval --features "$WORK/flip.h5" --distance cosine --rerank --json-out "$WORK/rr2.json" > /dev/null
check "extract --flip + eval --features = eval --checkpoint --flip" \
    python3 -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(a['mAP']!=b['mAP'] or a['cmc']!=b['cmc'])" \
    "$WORK/rr.json" "$WORK/rr2.json"
"$MANCS" extract --checkpoint "$ckpt" --data "$WORK/data" --out "$WORK/plain.h5" > /dev/null
"$MANCS" extract --checkpoint "$ckpt" --data "$WORK/data" --out "$WORK/unit.h5" --normalize > /dev/null
"$MANCS" eval --features "$WORK/plain.h5" --distance cosine --json-out "$WORK/cos.json" > /dev/null
"$MANCS" eval --features "$WORK/unit.h5" --json-out "$WORK/unit.json" > /dev/null
check "extract --normalize ranks like --distance cosine" \
    python3 -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(abs(a['mAP']-b['mAP'])>1e-6 or a['cmc']!=b['cmc'])" \
    "$WORK/cos.json" "$WORK/unit.json"
check "flip changes the features" sh -c "! h5diff -q '$WORK/plain.h5' '$WORK/flip.h5' /query/features > /dev/null 2>&1"

# Bad combinations: one line, non-zero exit.
for args in "--features $WORK/plain.h5 --flip" "--features $WORK/plain.h5 --rerank --lambda 2" \
            "--features $WORK/plain.h5 --distance manhattan"; do
    status=0; "$MANCS" eval $args > "$WORK/err.txt" 2>&1 || status=$?
    cat "$WORK/err.txt"
    check "eval $args fails" test "$status" -ne 0
done
status=0; "$MANCS_DIST" --data "$WORK/data" --run-dir "$WORK/bad" --eval-distance l1 > "$WORK/err.txt" 2>&1 || status=$?
cat "$WORK/err.txt"
check "mancs-dist --eval-distance l1 is one error" grep -q "eval-distance must be euclidean or cosine" "$WORK/err.txt"

# --json means one thing across commands: print JSON instead of the table; the
# old `eval --json FILE` still writes FILE, with a one-line deprecation note.
"$MANCS" eval --features "$WORK/plain.h5" --json > "$WORK/stdout.json"
check "eval --json prints one JSON object" python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$WORK/stdout.json"
"$MANCS" eval --features "$WORK/plain.h5" --json "$WORK/old.json" > /dev/null 2> "$WORK/old.err"
check "eval --json FILE (old spelling) still writes FILE" \
    python3 -c "import json,sys; a,b=(json.load(open(f)) for f in sys.argv[1:]); sys.exit(a!=b)" "$WORK/old.json" "$WORK/stdout.json"
check "with one deprecation line" test "$(grep -c "deprecated; use --json-out" "$WORK/old.err")" -eq 1
"$MANCS" eval --checkpoint "$ckpt" --data "$WORK/data" --json > "$WORK/ck.json"
check "eval --checkpoint --json: stdout is only the JSON (no progress lines)" \
    python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$WORK/ck.json"
