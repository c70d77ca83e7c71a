#!/usr/bin/env bash
# Builds the libFuzzer targets (swiftc -sanitize=fuzzer,address on the parser
# sources themselves, with Swift's bounds and overflow checks) and runs each
# for a bounded time from the seed corpus in Tests/fuzz/corpus/<target>.
#
#   Tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]    (default 30 s; all five)
#
# New inputs found go to a scratch corpus, not the repository. A crash leaves
# (Leak detection is off: Foundation's file reading leaks a buffer per call.)
# its input in $FUZZ_OUT/<target>/ (crash-*) and fails the script: add it to
# Tests/ as a regression file with a test.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-30}"; shift || true
targets=("${@:-mat jpeg safetensors hdf5 list}")
read -r -a targets <<< "${targets[*]}"
out="${FUZZ_OUT:-$(mktemp -d /tmp/mancs-fuzz.XXXXXX)}"
bin=.build/fuzz
mkdir -p "$bin"
export SWIFT_BACKTRACE=enable=no   # a Swift trap reaches libFuzzer as a plain crash
export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
swiftc_fuzz() {
    local name="$1"; shift
    if ! swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name "Fuzz_$name" "$@" -o "$bin/$name" > "$bin/$name.build.log" 2>&1; then
        grep -v "Cannot export local symbol" "$bin/$name.build.log" >&2; echo "FAIL: cannot build fuzz target $name" >&2; exit 1
    fi
}
hdf5_flags=($(pkg-config --cflags-only-I hdf5 | sed 's/-I/-Xcc -I/g') $(pkg-config --libs hdf5))
for t in "${targets[@]}"; do
    case "$t" in
    mat) swiftc_fuzz mat Tests/fuzz/mat.swift Sources/ReIDData/MatFileV5.swift Sources/ReIDData/Inflate.swift \
            -Xcc -fmodule-map-file=Sources/CZlib/module.modulemap -I Sources/CZlib -lz ;;
    jpeg) swiftc_fuzz jpeg Tests/fuzz/jpeg.swift Sources/ReIDData/ImageDecoding.swift \
            -Xcc -fmodule-map-file=Sources/CTurboJPEG/module.modulemap -I Sources/CTurboJPEG -lturbojpeg ;;
    safetensors) swiftc_fuzz safetensors Tests/fuzz/safetensors.swift Sources/WeightsFiles/*.swift ;;
    hdf5) swiftc_fuzz hdf5 Tests/fuzz/hdf5.swift Sources/HDF5Kit/HDF5.swift \
            -Xcc -fmodule-map-file=Sources/CHDF5/module.modulemap -I Sources/CHDF5 "${hdf5_flags[@]}" ;;
    list) swiftc_fuzz list Tests/fuzz/list.swift Sources/ReIDData/ListFile.swift ;;
    *) echo "unknown fuzz target $t" >&2; exit 2 ;;
    esac
    mkdir -p "$out/$t/corpus"
    echo "== fuzz $t for $seconds s"
    status=0
    # libhdf5 asks malloc for whatever a damaged header says (430 GB in
    # Tests/fuzz/regressions/hdf5): outside ASAN malloc returns NULL and HDF5
    # reports an error, so let ASAN return NULL too instead of aborting.
    limits=(-rss_limit_mb=2048); asan="$ASAN_OPTIONS"
    if [ "$t" = hdf5 ]; then limits=(-rss_limit_mb=4096 -malloc_limit_mb=1048576); asan="$asan:allocator_may_return_null=1"; fi
    (cd "$out/$t" && ASAN_OPTIONS="$asan" "$OLDPWD/$bin/$t" -max_total_time="$seconds" "${limits[@]}" -max_len=65536 \
        -detect_leaks=0 -print_final_stats=1 corpus "$OLDPWD/Tests/fuzz/corpus/$t" > log 2>&1) || status=$?
    grep -E "stat::number_of_executed_units|cov:|ERROR|SUMMARY" "$out/$t/log" | tail -n 4
    echo "   corpus: $(ls "$out/$t/corpus" | wc -l) inputs"
    if ((status != 0)); then echo "FAIL: fuzz $t (exit $status): see $out/$t/log and $out/$t/crash-*" >&2; exit 1; fi
done
echo "fuzzing: no crashes ($out)"
