// libFuzzer target: the features-file reader (`mancs evaluate --features`) on
// arbitrary files. Compiled into module ReIDEval with its sources
// (instrumented); HDF5Kit and the rest come from the release build.
import Foundation

private let scratch = "/dev/shm/mancs-fuzz-features-\(getpid()).h5"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFeatures(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
    _ = try? FeaturesFile.read(scratch)
    return 0
}
