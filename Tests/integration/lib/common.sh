# Shared helpers of the integration tests (sourced). MANCS_BIN is the bin dir
# of the build under test (launch/test sets it).
set -euo pipefail
: "${MANCS_BIN:?set MANCS_BIN to the bin directory of the build}"
MANCS="$MANCS_BIN/mancs"
MANCS_DIST="$MANCS_BIN/mancs-dist"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK="$(mktemp -d /tmp/mancs-it.XXXXXX)"

# mpirun as the tests use it: root allowed, more ranks than cores allowed, no
# binding (ranks may run several threads).
mpi() { mpirun --allow-run-as-root --oversubscribe --bind-to none "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { local what="$1"; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }

# A small synthetic dataset, made once per script.
make_dataset() {
    local out="$1"; shift
    "$MANCS" synth --out "$out" "$@" >/dev/null || fail "mancs synth"
}

# The "loss" values of kind=train lines of a metrics.jsonl, one per line.
train_losses() { grep '"kind":"train"' "$1" | grep -o '"loss":[-0-9.e]*' | cut -d: -f2; }

# The newest checkpoint of a run directory.
newest_checkpoint() { ls "$1"/checkpoints/step-*.h5 2>/dev/null | sort | tail -n 1; }

# Waits (up to 60 s, then goes on) until RUN_DIR/metrics.jsonl holds N train lines:
# a background run has got that far.
wait_for_train_lines() {
    local dir="$1" n="$2"
    for _ in $(seq 1 600); do
        [ -f "$dir/metrics.jsonl" ] && [ "$(grep -c train "$dir/metrics.jsonl")" -ge "$n" ] && return 0
        sleep 0.1
    done
}

# The pid of a mancs-dist rank training into RUN_DIR (the last one started).
rank_pid() { pgrep -f "^$MANCS_DIST .*--run-dir $1 " | tail -n 1; }
