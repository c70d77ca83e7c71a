import Foundation
import HDF5Kit  // HDF5File.replaceAtomically: the one atomic writer
import MancsSettings

/// RUN_DIR: created, locked against a second job, and given the run's config.yaml (rank 0).
extension Trainer {
    /// Creates RUN_DIR and writes config.yaml (rank 0), like a checkpoint:
    /// a temporary, fsynced, read back as settings, renamed into place.
    static func prepareRunDirectory(_ settings: TrainSettings) throws -> String {
        let dir = URL(fileURLWithPath: settings.run.runDir)
        do {
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        } catch {
            throw SettingsError("--run-dir \(settings.run.runDir): cannot create the run directory (\(error.localizedDescription))")
        }
        try lockRunDirectory(dir)
        let text = try settings.configFileText()
        try HDF5File.replaceAtomically(dir.appendingPathComponent("config.yaml"),
                                       write: { try text.write(toFile: $0, atomically: false, encoding: .utf8) },
                                       verify: { _ = try TrainSettings(contentsOfConfig: $0) })
        return dir.path
    }

    /// The descriptor holding RUN_DIR/.lock, open for the life of the process.
    nonisolated(unsafe) static var runDirectoryLock: Int32 = -1

    /// Takes an exclusive `flock` on RUN_DIR/.lock (rank 0), refusing a second
    /// job in the same directory: two would delete each other's temporaries and
    /// interleave metrics.jsonl. The lock ends with the process, however it ends.
    static func lockRunDirectory(_ dir: URL) throws {
        let path = dir.appendingPathComponent(".lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SettingsError("--run-dir \(dir.path): cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw SettingsError("--run-dir \(dir.path) is in use by another job\(holder.isEmpty ? "" : " (the lock was last taken by \(holder))"): "
                                + "wait for it to end, or choose another --run-dir")
        }
        let me = Data("pid \(getpid()) on \(ProcessInfo.processInfo.hostName)\n".utf8)
        _ = ftruncate(fd, 0)
        _ = me.withUnsafeBytes { pwrite(fd, $0.baseAddress, me.count, 0) }
        runDirectoryLock = fd
    }
}
