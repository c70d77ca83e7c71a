#!/usr/bin/env bash
# `mancs eval` with --distance cosine, --normalize and --rerank (k1/k2/lambda)
# against an independent numpy transcription of torchreid's distances,
# re_ranking and eval_market1501 (Tests/integration/lib/eval_reference.py), on
# small random clustered feature sets: CMC, mAP and mINP agree to 1e-4.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
python3 -c "import numpy, h5py" 2>/dev/null || python3 -m pip install --quiet numpy h5py \
    || fail "cannot pip install numpy h5py (the reference needs them)"
check "mancs eval options agree with the numpy reference" \
    python3 "$(dirname "$0")/lib/eval_reference.py" "$MANCS" "$WORK"
