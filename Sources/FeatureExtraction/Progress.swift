import Distributed  // MPILaunch
import Foundation
import ReIDEval

/// Progress of a long stage (feature extraction) for people watching: on a
/// terminal, one line redrawn in place with images/s and the time left; otherwise
/// (a log file, a pipe, mpirun's output) one line when the stage starts and one
/// when it ends, so logs stay short.
public final class StageProgress: @unchecked Sendable {  // updated from one thread
    let label: String
    let total: Int
    let interactive: Bool
    let write: (String) -> Void
    let start = monotonicSeconds()
    var lastDraw = -1.0

    /// `write` prints a finished line (default: stdout). `interactive` nil: stdout
    /// is a terminal (TERM set, not dumb) and not under mpirun, or MANCS_PROGRESS=1.
    public init(label: String, total: Int, interactive: Bool? = nil, write: ((String) -> Void)? = nil) {
        self.label = label
        self.total = total
        self.interactive = interactive ?? StageProgress.stdoutIsTerminal
        self.write = write ?? { print($0); fflush(nil) }
        if !self.interactive { self.write("\(label): \(total) images ...") }
    }

    /// The rule of the trainer's progress bar (mpirun hands ranks a pseudo-terminal).
    public static var stdoutIsTerminal: Bool {
        let env = ProcessInfo.processInfo.environment
        if env["MANCS_PROGRESS"] == "1" { return true }
        let term = env["TERM"] ?? ""
        return isatty(STDOUT_FILENO) != 0 && !term.isEmpty && term != "dumb" && !MPILaunch.isLaunched
    }

    /// `done` of `total` images finished; redraws at most 4 times a second.
    public func update(_ done: Int) {
        guard interactive else { return }
        let t = monotonicSeconds()
        guard t - lastDraw >= 0.25 || done >= total else { return }
        lastDraw = t
        let elapsed = t - start, rate = Double(done) / max(elapsed, 1e-9)
        let eta = done > 0 ? Double(total - done) / rate : .infinity
        print("\r\u{1B}[K\(label): \(done)/\(total) images, " + String(format: "%.1f images/s", rate)
              + ", ETA \(formatDuration(eta))", terminator: "")
        fflush(nil)
    }

    /// Ends the stage with one line: images, seconds, images/s.
    public func finish(_ done: Int? = nil) {
        let n = done ?? total, elapsed = monotonicSeconds() - start
        if interactive { print("\r\u{1B}[K", terminator: "") }
        write("\(label): \(n) images in " + String(format: "%.1f s (%.1f images/s)", elapsed, Double(n) / max(elapsed, 1e-9)))
    }
}

/// "1h02m", "3m05s", "42s" ("?" for an unknown time).
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    let s = Int(seconds.rounded())
    if s >= 3600 { return "\(s / 3600)h\(String(format: "%02d", (s / 60) % 60))m" }
    if s >= 60 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
    return "\(s)s"
}

/// The `progress` callback of `extractFeatures` as a `StageProgress`, on one rank
/// (the others stay quiet): created at the first report, when the rank's number
/// of images is known. Under several ranks the line shows rank 0's share.
public final class ExtractionProgress: @unchecked Sendable {
    let label: String
    let enabled: Bool
    let write: ((String) -> Void)?
    let interactive: Bool?
    var stage: StageProgress?
    var done = 0

    /// `interactive`: see `StageProgress`; pass `StageProgress.stdoutIsTerminal` read
    /// before MPI_Init when there is a communicator (Open MPI's singleton start
    /// sets the variables that mean "under mpirun").
    public init(label: String, enabled: Bool = true, interactive: Bool? = nil, write: ((String) -> Void)? = nil) {
        self.label = label; self.enabled = enabled; self.interactive = interactive; self.write = write
    }

    public var callback: (Int, Int) -> Void {
        { [self] done, total in
            guard enabled else { return }
            if stage == nil { stage = StageProgress(label: label, total: total, interactive: interactive, write: write) }
            self.done = done
            stage?.update(done)
        }
    }

    /// The closing line (nothing if nothing was reported).
    public func finish() { stage?.finish(done); stage = nil }
}
