// libFuzzer target: HDF5Kit on arbitrary files, as the checkpoint and features
// readers use it: walk every dataset, read it, read the attributes they read.
// (libhdf5 itself is not instrumented: coverage is HDF5Kit's.)
import Foundation

private let scratch = "/dev/shm/mancs-fuzz-h5-\(getpid()).h5"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHDF5(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes: data, count: size))
    guard let file = try? HDF5File(openForReading: scratch) else { return 0 }
    defer { file.close() }
    let root = file.root
    try? root.walkDatasets { g, name in
        _ = try? g.read(name, as: Double.self)
        _ = try? g.readStrings(name)
        _ = try? g.readRows(name, start: 0, count: 1, as: Float.self)
    }
    // The attributes the readers read, by name (HDF5Kit lists none: see HDF5.swift).
    for (group, names) in [("/", ["format", "version", "global_step", "epoch", "world_size", "seed", "config"]), ("optimizer", ["step"]), ("state", ["json"])] {
        guard let g = try? root.group(group) else { continue }
        for name in names where g.hasAttribute(name) {
            _ = try? g.stringAttribute(name)
            _ = try? g.attribute(name, as: Int64.self)
        }
    }
    return 0
}
