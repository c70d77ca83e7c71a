// libFuzzer target: the list-file parsers (the generic `list` dataset's
// `path pid camid split` lines and MSMT17's `path pid` lines). The first byte
// picks the parser; the rest is the file.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzListFile(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let text = Data(bytes: data + 1, count: size - 1)
    if data[0] & 1 == 0 {
        _ = try? parseImageList(text, file: "list.txt")
    } else {
        _ = try? parseMSMT17List(text, file: "list_train.txt")
    }
    return 0
}
