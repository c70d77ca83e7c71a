// libFuzzer target: the safetensors reader (header, offsets, conversions).
import Foundation

private let scratch = "/dev/shm/mancs-fuzz-st-\(getpid()).safetensors"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
    guard let file = try? SafetensorsFile(contentsOf: URL(fileURLWithPath: scratch)) else { return 0 }
    for e in file.entries { _ = try? file.floats(e) }
    return 0
}
