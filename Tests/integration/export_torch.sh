#!/usr/bin/env bash
# `mancs export` (issue 16): a checkpoint trained for a few steps, exported as
# safetensors, is loaded by PyTorch's own `safetensors` package into the
# reference network (shared/reference/mancs_ref.py) rebuilt from the file's
# __metadata__ with a strict load_state_dict, and gives the features of `mancs
# extract` within 1e-4 (Tests/integration/lib/export_reference.py; torch,
# safetensors and pillow are pip-installed if missing, see lib/torch_python.sh).
# The file is read back by `mancs extract --checkpoint` (bit-identical features)
# and `mancs-dist --pretrained` (every tensor loaded); bad input is one error
# that leaves an existing output untouched.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/torch_python.sh"
trap 'rm -rf "$WORK"' EXIT
torch_python safetensors PIL=pillow
root="$(cd "$(dirname "$0")/../.." && pwd)"
reference="${MANCS_SHARED:-$root/../shared}/reference"
[ -f "$reference/mancs_ref.py" ] || fail "no $reference/mancs_ref.py (set MANCS_SHARED)"

make_dataset "$WORK/data" --train-ids 6 --test-ids 3 --images-per-id 4 --cameras 2 --seed 5 --height 64 --width 32
train=(--data "$WORK/data" --base-width 8 --blocks 1,2,1,1 --attention-stages 2,4 --last-stride 1 --height 64 --width 32
       --ids-per-batch 3 --images-per-id 2 --loader-threads 1 --threads 1 --eval-every 1000)
"$MANCS_DIST" "${train[@]}" --run-dir "$WORK/run" --max-steps 3 > "$WORK/train.log" 2>&1 || { cat "$WORK/train.log"; fail "training run"; }
ckpt=$(newest_checkpoint "$WORK/run")
[ -n "$ckpt" ] || fail "no checkpoint written"

# 1. Export: one line, an atomic write (no temporary left behind).
mkdir "$WORK/out"
"$MANCS" export --checkpoint "$ckpt" --out "$WORK/out/model.safetensors" > "$WORK/export.txt" || fail "mancs export"
cat "$WORK/export.txt"
check "one line naming the architecture" grep -q "base width 8, blocks 1,2,1,1, attention stages 2,4" "$WORK/export.txt"
check "only the exported file in the output folder" test "$(ls -A "$WORK/out")" = "model.safetensors"

"$MANCS" inspect "$WORK/out/model.safetensors" > "$WORK/inspect.txt" || fail "mancs inspect model.safetensors"
check "inspect: the export's format" grep -q "format: *safetensors (mancs-weights) version 1" "$WORK/inspect.txt"
check "inspect: its step" grep -q "global step: *3$" "$WORK/inspect.txt"
check "inspect: its architecture" grep -q '"blocks":\[1,2,1,1\]' "$WORK/inspect.txt"

# 2. The same features from the checkpoint and from the export.
ext=(--data "$WORK/data" --batch 4 --threads 1 --loader-threads 1)
"$MANCS" extract --checkpoint "$ckpt" --out "$WORK/a.h5" "${ext[@]}" > /dev/null || fail "extract from the checkpoint"
"$MANCS" extract --checkpoint "$WORK/out/model.safetensors" --out "$WORK/b.h5" "${ext[@]}" > /dev/null \
    || fail "extract from the export"
check "extract --checkpoint model.safetensors: bit-identical features" \
    "$MANCS" diff "$WORK/a.h5" "$WORK/b.h5" --groups query,gallery

# 3. PyTorch: safetensors' loader, the reference network, strict load_state_dict.
check "PyTorch on the export = mancs extract within 1e-4" \
    "$TORCH_PYTHON" "$(dirname "$0")/lib/export_reference.py" "$WORK/out/model.safetensors" "$WORK/a.h5" \
    "$WORK/data" "$reference" 4 1e-4 \
    '{"base_width": 8, "blocks": [1, 2, 1, 1], "attention_stages": [2, 4], "last_stride": 1, "height": 64, "width": 32, "num_classes": 6}'

# 4. mancs-dist --pretrained reads it back: every tensor, nothing missing or unexpected.
"$MANCS_DIST" "${train[@]}" --run-dir "$WORK/pre" --max-steps 1 --pretrained "$WORK/out/model.safetensors" \
    > "$WORK/pre.log" 2>&1 || { cat "$WORK/pre.log"; fail "training from --pretrained"; }
grep "pretrained" "$WORK/pre.log"
tensors=$(python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); print(sum(1 for k in h if k!='__metadata__' and not k.endswith('num_batches_tracked')))" "$WORK/out/model.safetensors")
check "--pretrained: all $tensors tensors loaded, none missing or unexpected" \
    grep -q "pretrained .*: loaded $tensors, missing 0, unexpected 0" "$WORK/pre.log"

# 5. Bad input: one error line, exit 1, the existing output untouched, no temporary left.
cp "$WORK/out/model.safetensors" "$WORK/keep.safetensors"
head -c 1000 "$ckpt" > "$WORK/truncated.h5"
for bad in "$WORK/none.h5" "$WORK/truncated.h5" "$WORK/data/query"; do
    status=0; "$MANCS" export --checkpoint "$bad" --out "$WORK/out/model.safetensors" > "$WORK/err.txt" 2>&1 || status=$?
    check "export --checkpoint $(basename "$bad"): exit 1 with one line" \
        test "$status" -eq 1 -a "$(wc -l < "$WORK/err.txt")" -eq 1
    cat "$WORK/err.txt"
done
status=0; "$MANCS" export --checkpoint "$ckpt" --out "$WORK/no/such/dir/m.safetensors" > "$WORK/err.txt" 2>&1 || status=$?
check "export into a missing folder: exit 1 with one line" test "$status" -eq 1 -a "$(wc -l < "$WORK/err.txt")" -eq 1
check "the existing export is untouched" cmp -s "$WORK/keep.safetensors" "$WORK/out/model.safetensors"
check "no temporary left behind" test "$(ls -A "$WORK/out")" = "model.safetensors"
