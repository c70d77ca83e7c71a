// libFuzzer target: the checkpoint reader on arbitrary files, as `mancs
// inspect`, `--resume auto` and `mancs evaluate` use it: verify (attributes,
// the walk, every dataset read back) and the architecture inferred from tensor
// names. Compiled into module Checkpoint with its sources (instrumented);
// HDF5Kit and MancsModel come from the release build (uninstrumented).
import Foundation

private let scratch = "/dev/shm/mancs-fuzz-ckpt-\(getpid()).h5"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
    let url = URL(fileURLWithPath: scratch)
    _ = try? Checkpoint.verify(url)
    _ = try? Checkpoint.inferConfig(url)
    return 0
}
