// libFuzzer target: the level-5 MAT-file reader (with zlib inflation).
import Foundation

private let scratch = "/dev/shm/mancs-fuzz-mat-\(getpid()).mat"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMatFile(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
    _ = try? readMatFileV5(path: scratch)
    return 0
}
