#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address on the parser
# sources themselves, with Swift's bounds and overflow checks) and runs each
# for a bounded time from the seed corpus in Tests/fuzz/corpus/<target>.
#
#   Tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]    (default 30 s; all seven)
#
# Targets: mat, jpeg, safetensors, list (list files), hdf5 (HDF5Kit), checkpoint (the checkpoint
# reader) and features (the features-file reader). The last two compile their
# target's sources with the sanitizers and link the modules below it from the
# release build (`swift build -c release -Xswiftc -enable-testing`, as
# launch/test builds; built here if missing).
#
# New inputs found go to a scratch corpus, not the repository. A crash leaves
# its input in $FUZZ_OUT/<target>/ (crash-*) and fails the script: add it to
# Tests/ as a regression file with a test. (Leak detection is off: Foundation's
# file reading leaks a buffer per call.)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-30}"; shift || true
targets=("${@:-mat jpeg safetensors list hdf5 checkpoint features}")
read -r -a targets <<< "${targets[*]}"
out="${FUZZ_OUT:-$(mktemp -d /tmp/mancs-fuzz.XXXXXX)}"
bin=.build/fuzz
mkdir -p "$bin"
export SWIFT_BACKTRACE=enable=no   # a Swift trap reaches libFuzzer as a plain crash
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
swiftc_fuzz() {
    local name="$1"; shift
    if ! swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "${module:-Fuzz_$name}" "$@" -o "$bin/$name" > "$bin/$name.build.log" 2>&1; then
        grep -v "Cannot export local symbol" "$bin/$name.build.log" >&2; echo "FAIL: cannot build fuzz target $name" >&2; exit 1
    fi
}
# Runs target $t once on a crash input ($2) with ASAN_OPTIONS=$1: sets `report` (its
# output) and `frame` (the innermost stack frame that is ours or libhdf5's; empty when
# the input did not crash again). The grep finding nothing must not end the script
# under pipefail.
replay() {
    report=$(ASAN_OPTIONS="$1" timeout 60 "$bin/$t" "$2" 2>&1 || true)
    frame=$(grep -E '^ +#[0-9]+ ' <<< "$report" | grep -E 'libhdf5|/work/|Sources/|Fuzz_|\$s' | head -n 1 || true)
}
hdf5_flags=($(pkg-config --cflags-only-I hdf5 | sed 's/-I/-Xcc -I/g') $(pkg-config --libs hdf5))
# A package target compiled as module $1 from its sources plus the harness,
# against the release build's modules and objects of the targets it needs.
swiftc_fuzz_target() {
    local name="$1" target="$2"; shift 2
    local build=(-c release -Xswiftc -enable-testing)
    swift build "${build[@]}" --target "$target" > "$bin/$name.swift-build.log" 2>&1 \
        || { tail -n 20 "$bin/$name.swift-build.log" >&2; echo "FAIL: release build of $target" >&2; exit 1; }
    local rel; rel=$(swift build "${build[@]}" --show-bin-path)
    local objects=() cflags=() libs=() c
    # The objects of the target's current sources (a build folder may hold stale ones of renamed files);
    # a C target (one with an include folder) also brings the module map SwiftPM wrote for it.
    local src
    for dep in "$@"; do
        if [ -d Sources/"$dep"/include ]; then
            for src in Sources/"$dep"/*.c; do objects+=("$rel/$dep.build/$(basename "$src").o"); done
            cflags+=(-Xcc -fmodule-map-file="$rel/$dep.build/module.modulemap")
        else
            for src in Sources/"$dep"/*.swift; do objects+=("$rel/$dep.build/$(basename "$src").o"); done
        fi
    done
    for c in CBLAS CMPI CHDF5 CTurboJPEG CZlib; do cflags+=(-Xcc -fmodule-map-file=Sources/$c/module.modulemap); done
    for pc in openblas ompi-c hdf5 libturbojpeg zlib; do
        cflags+=($(pkg-config --cflags-only-I "$pc" | sed 's/-I/-Xcc -I/g')); libs+=($(pkg-config --libs "$pc"))
    done
    module="$target" swiftc_fuzz "$name" "Tests/fuzz/$name.swift" Sources/"$target"/*.swift -I "$rel/Modules" \
        "${cflags[@]}" "${objects[@]}" "${libs[@]}"
}
for t in "${targets[@]}"; do
    case "$t" in
    mat) swiftc_fuzz mat Tests/fuzz/mat.swift Sources/ReIDData/MatFileV5.swift Sources/ReIDData/Inflate.swift \
            -Xcc -fmodule-map-file=Sources/CZlib/module.modulemap -I Sources/CZlib -lz ;;
    jpeg) swiftc_fuzz jpeg Tests/fuzz/jpeg.swift Sources/ReIDData/ImageDecoding.swift \
            -Xcc -fmodule-map-file=Sources/CTurboJPEG/module.modulemap -I Sources/CTurboJPEG -lturbojpeg ;;
    safetensors) swiftc_fuzz safetensors Tests/fuzz/safetensors.swift Sources/WeightsFiles/*.swift ;;
    list) swiftc_fuzz list Tests/fuzz/list.swift Sources/ReIDData/ListFile.swift ;;
    hdf5) swiftc_fuzz hdf5 Tests/fuzz/hdf5.swift Sources/HDF5Kit/*.swift \
            -Xcc -fmodule-map-file=Sources/CHDF5/module.modulemap -I Sources/CHDF5 "${hdf5_flags[@]}" ;;
    checkpoint) swiftc_fuzz_target checkpoint Checkpoint HDF5Kit Kernels CGEMMKernels CWinogradKernels MancsModel Distributed WeightsFiles DeterministicRandom ;;
    features) swiftc_fuzz_target features ReIDEval HDF5Kit Kernels CGEMMKernels CWinogradKernels DeterministicRandom ;;
    *) echo "unknown fuzz target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$out/$t/corpus"
    echo "== fuzz $t for $seconds s"
    status=0
    # libhdf5 asks malloc for whatever a damaged header says (430 GB in
    # Tests/fuzz/regressions/hdf5): outside ASAN malloc returns NULL and HDF5
    # reports an error, so let ASAN return NULL too instead of aborting.
    limits=(-rss_limit_mb=2048 -max_len=65536); asan="$ASAN_OPTIONS"; asan_unsuppressed=""
    seeds=("$PWD/Tests/fuzz/corpus/$t")
    if [[ "$t" =~ ^(hdf5|checkpoint|features)$ ]]; then
        limits=(-rss_limit_mb=4096 -malloc_limit_mb=1048576 -max_len=65536); asan="$asan:allocator_may_return_null=1:suppressions=$PWD/Tests/fuzz/libhdf5.supp"
        asan_unsuppressed="$ASAN_OPTIONS:allocator_may_return_null=1"
        # Seeds: every HDF5 file of the corpus and the regression files.
        seeds=("$PWD/Tests/fuzz/corpus/$t")
        for d in hdf5 checkpoint features; do [ "$d" = "$t" ] || seeds+=("$PWD/Tests/fuzz/corpus/$d"); done
        seeds+=("$PWD/Tests/fuzz/regressions/hdf5")
        # The tiny checkpoint is 160 kB (267 datasets).
        if [ "$t" = checkpoint ]; then limits[2]=-max_len=262144; fi
    fi
    # libhdf5 1.10.8 itself crashes on some damaged files (docs/security.md):
    # the HDF5 targets keep going after a crash (-fork) and only a crash whose
    # innermost frame of ours or of libhdf5 is ours fails the run.
    if [[ "$t" =~ ^(hdf5|checkpoint|features)$ ]]; then limits+=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1); fi
    (cd "$out/$t" && ASAN_OPTIONS="$asan" "$OLDPWD/$bin/$t" -max_total_time="$seconds" "${limits[@]}" \
        -detect_leaks=0 -print_final_stats=1 corpus "${seeds[@]}" > log 2>&1) || status=$?
    grep -E "stat::number_of_executed_units|cov:|ERROR|SUMMARY" "$out/$t/log" | tail -n 4
    echo "   corpus: $(ls "$out/$t/corpus" | wc -l) inputs"
    ours=0; theirs=0
    for crash in "$out/$t"/crash-* "$out/$t"/oom-* "$out/$t"/timeout-*; do
        [ -e "$crash" ] || continue
        replay "$asan" "$crash"
        if [ -z "$frame" ] && [ -n "$asan_unsuppressed" ]; then
            # libhdf5's known reads of freed or out-of-bounds header memory (libhdf5.supp)
            # crash only now and then, depending on the heap: run it again with ASan
            # reporting them, which shows whose frame the bad access is in.
            replay "$asan_unsuppressed" "$crash"
            [ -z "$frame" ] || echo "   reproduced with ASan's reports inside libhdf5 on (no crash with them suppressed): $crash"
        fi
        # A crash that does not come back has no frame and cannot be put on libhdf5:
        # it counts as ours, with a line saying so.
        if [ -z "$frame" ]; then
            ours=$((ours + 1)); echo "   NOT REPRODUCED (no stack when run again; counted as ours): $crash" >&2
        elif grep -q libhdf5 <<< "$frame"; then
            # The innermost named libhdf5 function (the frame itself may have no symbol).
            name=$(grep -E '^ +#[0-9]+ ' <<< "$report" | grep -m1 -o 'in H5[A-Za-z0-9_]*' || true)
            theirs=$((theirs + 1)); echo "   inside libhdf5: $crash${name:+ (${name#in })}"
        else
            ours=$((ours + 1)); echo "   OURS: $crash" >&2; grep -E '^ +#[0-9]+ |SUMMARY' <<< "$report" | head -n 12 >&2
        fi
    done
    ((theirs == 0)) || echo "   $theirs input(s) crash inside libhdf5 (known, not fixed here: docs/security.md)"
    if ((ours != 0)) || { ((status != 0)) && ((theirs == 0)); }; then
        echo "FAIL: fuzz $t (exit $status): see $out/$t/log and $out/$t/crash-*" >&2; exit 1
    fi
done
echo "fuzzing: no crashes in our code ($out)"
