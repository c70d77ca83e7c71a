#!/usr/bin/env bash
# Two simulated nodes (launch/simcluster: network namespaces with their own
# hostnames, TCP between them, Open MPI started through an rsh agent), one rank
# each:
#   (e) mancs mpi-check reports both nodes and times allreduce over TCP;
#   (c) rank 0 cannot create --run-dir: the job ends within 30 s, non-zero, one
#       error line naming the node and the path;
#   (b) one node sees an empty data folder, or another listing: the same;
#   (a) train, stop, resume across the 2 nodes: bit-identical to the same run
#       on one node;
#   (d) mancs extract across the 2 nodes writes the same features as one process.
# Needs root (network namespaces) and iproute2; fails (does not skip) without them.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
simcluster="$root/launch/simcluster"
export SIMCLUSTER_DIR="$WORK/cluster"
trap '"$simcluster" down >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
"$simcluster" up 2 || fail "could not make the simulated cluster (needs root and ip netns)"
cluster=("$simcluster" run mpirun --allow-run-as-root --bind-to none -np 2)

# (e) mpi-check across the nodes.
"${cluster[@]}" "$MANCS" mpi-check --megabytes 8 > "$WORK/check.log" 2>&1 || { cat "$WORK/check.log"; fail "mpi-check on 2 nodes"; }
cat "$WORK/check.log"
check "mpi-check: rank 0 on simnode1" grep -q '^  rank 0 on simnode1 ' "$WORK/check.log"
check "mpi-check: rank 1 on simnode2" grep -q '^  rank 1 on simnode2 ' "$WORK/check.log"
check "mpi-check: two nodes" grep -q '^2 node(s): simnode1 (rank 0), simnode2 (rank 1)' "$WORK/check.log"
check "mpi-check: TCP bandwidth measured" grep -q '^allreduce of 8 MB: .* GB/s' "$WORK/check.log"
check "mpi-check: small-message latency measured" grep -q '^allreduce of 4 KiB: .* us' "$WORK/check.log"
check "mpi-check: OK" grep -q '^mpi-check: OK' "$WORK/check.log"

make_dataset "$WORK/data" --train-ids 8 --test-ids 4 --images-per-id 4 --cameras 2 --seed 3 --height 64 --width 32
common=(--data "$WORK/data" --base-width 8 --blocks 1,1,1,1 --height 64 --width 32 --ids-per-batch 4
        --images-per-id 2 --seed 5 --loader-threads 1 --threads 1 --log-every 2 --checkpoint-every 3)

# A job that must fail fast: exit non-zero within 30 s with exactly one error
# line, which names $2 (the node) and $3 (the path).
must_fail_fast() {
    local what="$1" node="$2" path="$3"; shift 3
    local start=$SECONDS rc=0
    timeout 60 "$@" > "$WORK/fail.out" 2> "$WORK/fail.err" || rc=$?
    local elapsed=$((SECONDS - start))
    echo "$what: exit $rc after ${elapsed}s; stderr:"; sed 's/^/    /' "$WORK/fail.err"
    check "$what: ends non-zero" test "$rc" -ne 0
    check "$what: not killed by the timeout" test "$rc" -ne 124
    check "$what: within 30 s" test "$elapsed" -lt 30
    local lines; lines=$(grep -c 'mancs-dist' "$WORK/fail.err" || true)
    check "$what: one error line" test "$lines" -eq 1
    check "$what: it names the node and the path" grep -q "$node.*$path" "$WORK/fail.err"
}

# (c) rank 0 cannot create the run directory.
must_fail_fast "unwritable --run-dir" simnode1 /proc/x "${cluster[@]}" "$MANCS_DIST" "${common[@]}" --run-dir /proc/x --max-steps 3
# (b) the data folder is empty on node 2 (an empty tmpfs over it, in that node's mount namespace).
must_fail_fast "data hidden on one node" simnode2 "$WORK/data" \
    env "SIMCLUSTER_HIDE_simnode2=$WORK/data" "$simcluster" run mpirun --allow-run-as-root --bind-to none -np 2 \
    "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/hidden" --max-steps 3

# The data folder on node 2 is a stale copy (one training image fewer): the
# ranks compare a digest of their listings and stop.
cp -r "$WORK/data" "$WORK/stale"
rm "$(ls "$WORK/stale/bounding_box_train/"*.jpg | head -n 1)"
must_fail_fast "another listing on one node" simnode2 "$WORK/data lists" \
    env "SIMCLUSTER_BIND_simnode2=$WORK/stale=$WORK/data" "$simcluster" run mpirun --allow-run-as-root --bind-to none -np 2 \
    "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/stale-run" --max-steps 3

# (a) 2 nodes: 6 steps, stop, resume to 12; one node (2 ranks over shared memory): 12 straight.
"${cluster[@]}" "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/nodes" --max-steps 6 > "$WORK/n1.log" 2>&1 || { cat "$WORK/n1.log"; fail "2 nodes, first half"; }
"${cluster[@]}" "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/nodes" --max-steps 12 > "$WORK/n2.log" 2>&1 || { cat "$WORK/n2.log"; fail "2 nodes, resumed"; }
check "every rank logs its CPU affinity with its node" grep -q 'rank 1 on simnode2: CPU affinity' "$WORK/n1.log"
check "2 nodes: resumed at step 6" grep -q 'resumed from .*step-00000006.h5 at step 6' "$WORK/n2.log"
mpi -np 2 "$MANCS_DIST" "${common[@]}" --run-dir "$WORK/one" --max-steps 12 > "$WORK/one.log" 2>&1 || { cat "$WORK/one.log"; fail "one node"; }
check "2 nodes with a resume end bit-identical to one node" \
    "$MANCS" diff "$WORK/one/checkpoints/step-00000012.h5" "$WORK/nodes/checkpoints/step-00000012.h5" --groups model,buffers,optimizer

# (d) extract across the 2 nodes = one process.
ckpt="$WORK/nodes/checkpoints/step-00000012.h5"
ext=(--checkpoint "$ckpt" --data "$WORK/data" --batch 3 --loader-threads 1)
"$MANCS" extract "${ext[@]}" --out "$WORK/one.h5" > /dev/null || fail "extract in one process"
"${cluster[@]}" "$MANCS" extract "${ext[@]}" --out "$WORK/two.h5" > "$WORK/extract.log" 2>&1 || { cat "$WORK/extract.log"; fail "extract on 2 nodes"; }
check "extract on 2 nodes writes the same features file as one process" h5diff "$WORK/one.h5" "$WORK/two.h5"
echo "simcluster.sh: OK"
