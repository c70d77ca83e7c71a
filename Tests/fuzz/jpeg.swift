// libFuzzer target: the JPEG decode path (header checks, then TurboJPEG).
import Foundation

private let decoder = JPEGDecoder()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJPEG(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = try? decoder.decode(data: Data(bytes: data, count: size))
    return 0
}
