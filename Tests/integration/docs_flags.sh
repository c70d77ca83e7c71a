#!/usr/bin/env bash
# Docs match --help: every --flag named in README.md and docs/*.md is a flag of
# some mancs command or of mancs-dist (per their --help), or of an outside tool
# listed below (mpirun, swift, srun, ...); and every flag of mancs-dist and of
# mancs eval/extract is documented somewhere.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
subcommands=$("$MANCS" --help | awk '/^SUBCOMMANDS:/ {on=1; next} on && /^  [a-z]/ {print $1}')
[ -n "$subcommands" ] || fail "no subcommands in mancs --help"
flags_of() { "$@" --help 2>&1 | grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
{
    for c in $subcommands; do flags_of "$MANCS" "$c"; done
    flags_of "$MANCS_DIST"
    # The launch scripts' own flags (their --help lists them).
    for script in parity simcluster speed; do flags_of "$root/launch/$script"; done
} | sort -u > "$WORK/known.txt"
# Flags of other programs that the docs quote (mpirun, swift, srun/sbatch, h5dump,
# pip, tensorboard, curl, the launch scripts' environment) — not ours to check.
cat > "$WORK/outside.txt" <<'LIST'
--allow-run-as-root
--build-path
--bind-to
--build-tests
--filter
--hostfile
--index-url
--logdir
--map-by
--mca
--no-parallel
--oversubscribe
--product
--quiet
--show-bin-path
--skip-build
--host
--ntasks
--ntasks-per-node
--nodes
--cpus-per-task
--signal
--time
--mpi
--partition
--report-bindings
--np
--header
--verbose
--exclusive
--overlap
--change
--base
--enable-testing
--export
--kill-on-bad-exit
--dependency
--requeue
LIST
sort -u "$WORK/outside.txt" -o "$WORK/outside.txt"
grep -oh -- '--[a-z][a-z0-9-]*' "$root/README.md" "$root"/docs/*.md | sort -u > "$WORK/documented.txt"
comm -23 "$WORK/documented.txt" <(sort -u "$WORK/known.txt" "$WORK/outside.txt") > "$WORK/unknown.txt"
if [ -s "$WORK/unknown.txt" ]; then
    echo "flags named in the docs that no command's --help knows:"
    while read -r f; do echo "  $f: $(grep -l -- "$f\b" "$root/README.md" "$root"/docs/*.md | xargs -n1 basename | tr '\n' ' ')"; done < "$WORK/unknown.txt"
    fail "docs name unknown flags"
fi
echo "ok: all $(wc -l < "$WORK/documented.txt") flags named in the docs are known"
missing=$( { flags_of "$MANCS_DIST"; flags_of "$MANCS" eval; flags_of "$MANCS" extract; } | sort -u \
           | grep -vx -- '--help\|--version\|--dump-gradients' | comm -23 - "$WORK/documented.txt")
[ -z "$missing" ] || { echo "flags of mancs-dist / eval / extract not in the docs:"; echo "$missing" | sed 's/^/  /'; fail "undocumented flags"; }
echo "ok: every flag of mancs-dist, mancs eval and mancs extract is documented"
