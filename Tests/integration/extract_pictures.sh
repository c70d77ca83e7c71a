#!/usr/bin/env bash
# `mancs visualize` and `mancs plot` on a real (tiny) run: a synthetic dataset,
# three steps of `mancs-dist` logging every step, then the pictures (decodable
# JPEGs listed in index.html) and the SVG (one polyline per loss).
set -uo pipefail
cd "$(dirname "$0")/../.."
bindir="${MANCS_BIN:-$(swift build -c release --show-bin-path)}"
mancs="$bindir/mancs"; dist="$bindir/mancs-dist"
for b in "$mancs" "$dist"; do [ -x "$b" ] || { echo "extract_pictures: no binary at $b"; exit 1; }; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "extract_pictures: FAIL: $*"; exit 1; }

"$mancs" synth --out "$tmp/data" --train-ids 6 --test-ids 4 --images-per-id 4 >"$tmp/synth.log" 2>&1 \
    || { cat "$tmp/synth.log"; fail "mancs synth could not make the dataset"; }
"$dist" --data "$tmp/data" --run-dir "$tmp/run" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 \
    --ids-per-batch 4 --images-per-id 2 --max-steps 3 --log-every 1 >"$tmp/train.log" 2>&1 \
    || { cat "$tmp/train.log"; fail "mancs-dist could not make a checkpoint"; }
ckpt=$(ls "$tmp"/run/checkpoints/*.h5 2>/dev/null | tail -n 1)
[ -n "$ckpt" ] || fail "no checkpoint"

"$mancs" visualize --checkpoint "$ckpt" --data "$tmp/data" --out "$tmp/pictures" --queries 3 --seed 1 \
    --tile-height 128 --tile-width 64 || fail "visualize"
n=$(ls "$tmp"/pictures/query_*_ranking.jpg | wc -l); [ "$n" = 3 ] || fail "expected 3 ranking pictures, got $n"
n=$(ls "$tmp"/pictures/query_*_attention.jpg | wc -l); [ "$n" = 3 ] || fail "expected 3 attention pictures, got $n"
for f in "$tmp"/pictures/*.jpg; do
    [ "$(head -c 2 "$f" | od -An -tx1 | tr -d ' ')" = ffd8 ] || fail "$f is not a JPEG"
    grep -q "$(basename "$f")" "$tmp/pictures/index.html" || fail "index.html does not list $(basename "$f")"
done
echo "ok   visualize: 6 JPEGs and index.html"

"$mancs" plot "$tmp/run" || fail "plot"
svg="$tmp/run/training.svg"
[ -s "$svg" ] || fail "no $svg"
# Four losses, plus rank-1 and mAP of the trainer's final evaluation.
grep -q '"kind":"eval"' "$tmp/run/metrics.jsonl" || fail "the run logged no evaluation"
lines=$(grep -o '<polyline' "$svg" | wc -l)
[ "$lines" = 6 ] || fail "expected 6 polylines (4 losses, rank-1, mAP), got $lines"
"$mancs" plot "$tmp/run" --out "$tmp/other.svg" >/dev/null && [ -s "$tmp/other.svg" ] || fail "plot --out"
if "$mancs" plot "$tmp/nowhere" 2>"$tmp/err"; then fail "plot of a missing run succeeded"; fi
[ "$(wc -l <"$tmp/err")" = 1 ] || fail "plot of a missing run: not one error line"
echo "ok   plot"
echo "extract_pictures: OK"
