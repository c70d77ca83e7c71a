import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension HDF5File {
    /// Writes `final` so that it is never seen half-written and a failure (a
    /// full disk, a damaged write) leaves the previous file untouched: `write`
    /// fills a temporary beside it, which is fsynced, checked by `verify`
    /// (reading it back), renamed into place; then the directory is fsynced.
    /// Checkpoints, `best.h5` and features files are all written this way.
    public static func replaceAtomically(_ final: URL, temporaryName: String? = nil,
                                         write: (String) throws -> Void, verify: (String) throws -> Void) throws {
        let dir = final.deletingLastPathComponent()
        let temp = dir.appendingPathComponent(temporaryName ?? ".\(final.lastPathComponent).tmp-\(getpid())")
        do {
            try write(temp.path)
            try fsyncPath(temp.path, directory: false)
            try verify(temp.path)
            guard rename(temp.path, final.path) == 0 else {
                throw HDF5Error("\(final.path): cannot rename the new file into place: \(String(cString: strerror(errno)))")
            }
            try fsyncPath(dir.path, directory: true)
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
    }
}

private func fsyncPath(_ path: String, directory: Bool) throws {
    let fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY)
    guard fd >= 0 else { throw HDF5Error("\(path): cannot open to fsync: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw HDF5Error("\(path): fsync failed: \(String(cString: strerror(errno)))") }
}
