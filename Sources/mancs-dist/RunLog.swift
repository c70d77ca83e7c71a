import Foundation

/// What rank 0 tells the user: log lines on stderr-free stdout, a progress bar
/// when stdout is a terminal, and one JSON object per log step appended to
/// `RUN_DIR/metrics.jsonl`. Other ranks print only warnings and errors.
final class RunLog: @unchecked Sendable {
    let isRoot: Bool
    let rank: Int
    private var metrics: FileHandle?
    private let interactive: Bool
    private let started = Date()

    init(rank: Int, runDir: String?) throws {
        self.rank = rank
        isRoot = rank == 0
        // mpirun hands ranks a pseudo-terminal even when its own output goes to
        // a file, so under MPI the bar is opt-in (MANCS_PROGRESS=1).
        let env = ProcessInfo.processInfo.environment
        let term = env["TERM"] ?? ""
        let underMPI = env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["SLURM_PROCID"] != nil
        interactive = isatty(STDOUT_FILENO) != 0 && !term.isEmpty && term != "dumb"
            && (!underMPI || env["MANCS_PROGRESS"] == "1")
        if isRoot, let dir = runDir {
            let path = (dir as NSString).appendingPathComponent("metrics.jsonl")
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw SettingsError("cannot create \(path)")
                }
            }
            metrics = FileHandle(forWritingAtPath: path)
            metrics?.seekToEndOfFile()
        }
    }

    /// An informational line, from rank 0 only.
    func info(_ message: String) {
        guard isRoot else { return }
        if interactive { print("\r\u{1B}[K", terminator: "") }
        print("[\(timestamp())] \(message)")
        fflush(nil)
    }

    /// A warning, from any rank (tagged with the rank when not 0).
    func warning(_ message: String) {
        let tag = isRoot ? "" : " (rank \(rank))"
        FileHandle.standardError.write(Data("mancs-dist: warning\(tag): \(message)\n".utf8))
    }

    /// An error, from any rank.
    func error(_ message: String) {
        let tag = isRoot ? "" : " (rank \(rank))"
        FileHandle.standardError.write(Data("mancs-dist: error\(tag): \(message)\n".utf8))
    }

    /// Appends one JSON object to metrics.jsonl (rank 0).
    func metric(_ object: [String: Any]) {
        guard isRoot, let h = metrics else { return }
        var o = object
        o["time"] = Date().timeIntervalSince1970
        guard let data = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) else { return }
        do {
            try h.write(contentsOf: data + Data("\n".utf8))
        } catch {
            // A full disk must not end the run here (FileHandle.write traps):
            // say so once; the next checkpoint reports the disk for every rank.
            warning("cannot append to metrics.jsonl (\(error.localizedDescription)); no more metrics are written")
            metrics = nil
        }
    }

    /// A one-line progress bar, redrawn in place, when stdout is a terminal.
    func progress(step: Int, total: Int, text: String) {
        guard isRoot, interactive else { return }
        let width = 24
        let done = total > 0 ? min(width, step * width / total) : 0
        let bar = String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
        print("\r\u{1B}[K[\(bar)] \(step)/\(total) \(text)", terminator: "")
        fflush(nil)
    }

    func close() {
        if interactive && isRoot { print("") }
        try? metrics?.synchronize()
        try? metrics?.close()
        metrics = nil
    }

    private func timestamp() -> String {
        let t = Int(Date().timeIntervalSince(started))
        return String(format: "%02d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60)
    }
}

/// "1h02m", "3m05s", "42s".
func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s / 60) % 60))m" }
    if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    return "\(s)s"
}
