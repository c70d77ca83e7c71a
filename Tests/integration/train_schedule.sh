#!/usr/bin/env bash
# mancs-dist's --lr-schedule step|cosine with --warmup-epochs, and --weight-decay,
# against PyTorch (Tests/integration/lib/schedule_reference.py; torch is
# pip-installed if missing, see lib/torch_python.sh): the lr logged at every step
# is torch's scheduler's for that epoch; one Adam step with weight decay from a
# mid-run checkpoint is torch.optim.Adam(weight_decay=...)'s; a resumed run has
# the same rates and ends bit-identical to a straight one.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
source "$(dirname "$0")/lib/torch_python.sh"
torch_python
ref="$(dirname "$0")/lib/schedule_reference.py"
make_dataset "$WORK/data" --train-ids 8 --test-ids 3 --images-per-id 4 --cameras 2 --seed 3 --height 64 --width 32
common=(--data "$WORK/data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 --ids-per-batch 4
        --images-per-id 2 --loader-threads 1 --log-every 1 --lr 1e-3 --checkpoint-every 1 --keep-checkpoints 20
        --eval-every 1000)

# 1. Step schedule with warm-up: 8 epochs of 2 steps.
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/step" --epochs 8 --lr-schedule step --lr-milestones 3,5 \
    --lr-gamma 0.5 --warmup-epochs 2 --warmup-factor 0.25 > "$WORK/step.log" 2>&1 || { cat "$WORK/step.log"; fail "step run"; }
check "step schedule = torch MultiStepLR x LinearLR" "$TORCH_PYTHON" "$ref" lr "$WORK/step/metrics.jsonl" \
    '{"kind": "step", "lr": 1e-3, "epochs": 8, "milestones": [3, 5], "gamma": 0.5, "warmup": 2, "factor": 0.25}'

# 2. Cosine with warm-up and weight decay; the Adam step from step 5 to step 6
#    replayed by torch from the step-5 checkpoint and step 6's gradient.
cosine=(--epochs 6 --lr-schedule cosine --warmup-epochs 1 --warmup-factor 0.1 --weight-decay 0.05)
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/cos" "${cosine[@]}" > "$WORK/cos.log" 2>&1 || { cat "$WORK/cos.log"; fail "cosine run"; }
check "cosine schedule = torch CosineAnnealingLR x LinearLR" "$TORCH_PYTHON" "$ref" lr "$WORK/cos/metrics.jsonl" \
    '{"kind": "cosine", "lr": 1e-3, "epochs": 6, "milestones": [], "gamma": 0.1, "warmup": 1, "factor": 0.1}'
steps=$(grep -c '"kind":"train"' "$WORK/cos/metrics.jsonl")
per_epoch=$((steps / 6))
mid=$((steps / 2))
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/cos2" "${cosine[@]}" --max-steps "$mid" > "$WORK/cos2a.log" 2>&1 || { cat "$WORK/cos2a.log"; fail "first half"; }
"$MANCS_DIST" "${common[@]}" --run-dir "$WORK/cos2" "${cosine[@]}" --dump-gradients "$WORK/grads.h5" > "$WORK/cos2b.log" 2>&1 || { cat "$WORK/cos2b.log"; fail "resumed half"; }
before=$(printf "%s/cos2/checkpoints/step-%08d.h5" "$WORK" "$mid"); after=$(printf "%s/cos2/checkpoints/step-%08d.h5" "$WORK" $((mid + 1)))
lr=$(grep '"kind":"train"' "$WORK/cos/metrics.jsonl" | sed -n "$((mid + 1))p" | grep -o '"lr":[-0-9.e]*' | cut -d: -f2)
check "Adam step with --weight-decay = torch.optim.Adam(weight_decay=0.05)" \
    "$TORCH_PYTHON" "$ref" adam "$before" "$WORK/grads.h5" "$after" "$lr" 0.05 5
check "the resumed run logs the same rates" diff <(grep '"kind":"train"' "$WORK/cos/metrics.jsonl" | grep -o '"lr":[^,]*') \
    <(grep '"kind":"train"' "$WORK/cos2/metrics.jsonl" | grep -o '"lr":[^,]*')
last=$(printf "step-%08d.h5" "$steps")
check "the resumed run ends bit-identical to the straight one" h5diff "$WORK/cos/checkpoints/$last" "$WORK/cos2/checkpoints/$last" /model
echo "($per_epoch steps per epoch)"

# 3. The paper's setting stays the default, and bad settings are one error each.
"$MANCS_DIST" --data "$WORK/data" --print-config > "$WORK/default.yaml"
check "default: constant rate, no warm-up, no decay" grep -q "lr-schedule: constant" "$WORK/default.yaml"
check "default weight decay 0" grep -Eq "^weight-decay: 0(\.0|e\+0)?$" "$WORK/default.yaml"
for args in "--lr-schedule linear" "--lr-schedule step" "--lr-schedule step --lr-milestones 5,3" \
            "--warmup-factor 0" "--weight-decay=-1"; do
    status=0; "$MANCS_DIST" --data "$WORK/data" --run-dir "$WORK/bad" $args > "$WORK/err.txt" 2>&1 || status=$?
    check "$args: one error line" test "$status" -ne 0 -a "$(grep -c 'mancs-dist:' "$WORK/err.txt")" -eq 1
    cat "$WORK/err.txt"
done
