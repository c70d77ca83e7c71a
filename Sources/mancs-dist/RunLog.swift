import Distributed
import Foundation
import FeatureExtraction  // formatDuration
import MancsSettings  // SettingsError

/// What rank 0 tells the user: log lines on stderr-free stdout, a progress bar
/// when stdout is a terminal, and one JSON object per log step appended to
/// `RUN_DIR/metrics.jsonl`. Other ranks print only warnings and errors.
final class RunLog: @unchecked Sendable {
    let isRoot: Bool
    let rank: Int
    private var metrics: FileHandle?
    /// RUN_DIR/log.txt: every line printed (and rank 0's warnings and errors).
    private var logFile: FileHandle?
    /// RUN_DIR/tensorboard/: the metrics' scalars as TensorBoard events.
    private var tensorBoard: TensorBoardWriter?
    private let interactive: Bool
    private let started = Date()

    init(rank: Int, runDir: String?) throws {
        self.rank = rank
        isRoot = rank == 0
        // mpirun hands ranks a pseudo-terminal even when its own output goes to
        // a file, so under MPI the bar is opt-in (MANCS_PROGRESS=1).
        let env = ProcessInfo.processInfo.environment
        let term = env["TERM"] ?? ""
        interactive = isatty(STDOUT_FILENO) != 0 && !term.isEmpty && term != "dumb"
            && (!MPILaunch.isLaunched || env["MANCS_PROGRESS"] == "1")
        if isRoot, let dir = runDir {
            /// A file of the run directory opened for appending (created if missing).
            func appending(_ name: String) throws -> FileHandle? {
                let path = (dir as NSString).appendingPathComponent(name)
                if !FileManager.default.fileExists(atPath: path) {
                    guard FileManager.default.createFile(atPath: path, contents: nil) else {
                        throw SettingsError("cannot create \(path)")
                    }
                }
                let handle = FileHandle(forWritingAtPath: path)
                handle?.seekToEndOfFile()
                return handle
            }
            metrics = try appending("metrics.jsonl")
            logFile = try appending("log.txt")
            tensorBoard = try TensorBoardWriter(directory: (dir as NSString).appendingPathComponent("tensorboard"))
        }
    }

    /// Appends a line to log.txt (rank 0).
    private func record(_ line: String) {
        logFile?.write(Data((line + "\n").utf8))
    }

    /// An informational line, from rank 0 only.
    func info(_ message: String) {
        guard isRoot else { return }
        if interactive { print("\r\u{1B}[K", terminator: "") }
        let line = "[\(timestamp())] \(message)"
        print(line)
        fflush(nil)
        record(line)
    }

    /// A line every rank prints as it is (e.g. its CPU affinity); rank 0's also goes to log.txt.
    func everyRank(_ line: String) {
        print(line)
        fflush(nil)
        record(line)
    }

    /// A warning, from any rank (tagged with the rank when not 0).
    func warning(_ message: String) {
        let tag = isRoot ? "" : " (rank \(rank))"
        FileHandle.standardError.write(Data("mancs-dist: warning\(tag): \(message)\n".utf8))
        record("[\(timestamp())] mancs-dist: warning: \(message)")
    }

    /// An error, from any rank.
    func error(_ message: String) {
        let tag = isRoot ? "" : " (rank \(rank))"
        FileHandle.standardError.write(Data("mancs-dist: error\(tag): \(message)\n".utf8))
        record("[\(timestamp())] mancs-dist: error: \(message)")
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
        if let tb = tensorBoard, let step = object["step"] as? Int {
            let tags = tensorBoardTags[object["kind"] as? String ?? ""] ?? []
            let values = tags.compactMap { key, tag in (object[key] as? Double).map { (tag, $0) } }
            if !values.isEmpty { tb.scalars(values, step: step) }
        }
    }

    /// metrics.jsonl keys -> TensorBoard tags, by kind of line.
    private let tensorBoardTags: [String: [(String, String)]] = [
        "train": [("loss", "loss/total"), ("loss_rank", "loss/rank"), ("loss_cls", "loss/cls"), ("loss_att", "loss/att"),
                  ("lr", "train/lr"), ("grad_norm", "train/grad_norm"), ("imgs_per_s", "train/imgs_per_s")],
        "eval": [("rank1", "eval/rank1"), ("mAP", "eval/mAP"), ("mINP", "eval/mINP"),
                 ("rerank_rank1", "eval/rerank_rank1"), ("rerank_mAP", "eval/rerank_mAP"), ("rerank_mINP", "eval/rerank_mINP")],
    ]

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
        try? logFile?.synchronize()
        try? logFile?.close()
        logFile = nil
        tensorBoard?.close()
        tensorBoard = nil
    }

    private func timestamp() -> String {
        let t = Int(Date().timeIntervalSince(started))
        return String(format: "%02d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60)
    }
}

