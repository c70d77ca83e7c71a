import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads an untrusted HDF5 file first in a short-lived child process: libhdf5
/// 1.10.8 itself crashes on some crafted files (docs/security.md), which no
/// wrapper around its API can prevent. A child that dies by a signal, or does
/// not finish within `timeout`, makes the file refused with one clear error;
/// otherwise the caller reads the file itself (a reader error then comes from
/// that read, worded as without the probe).
///
/// The child is this executable again (`/proc/self/exe`, through posix_spawn:
/// safe after MPI_Init, unlike fork) with `MANCS_PROBE_FILE=<kind>:<path>`;
/// its `main` calls `runIfRequested` before anything else. Only an executable
/// that registered its readers there probes (a test binary does not), and
/// `MANCS_PROBE_FILES=0` turns probing off.
public enum FileProbe {
    public static let requestVariable = "MANCS_PROBE_FILE"
    public static let switchVariable = "MANCS_PROBE_FILES"
    public static let defaultTimeout: Double = 60

    /// Kinds this executable can read in a child, set by `runIfRequested`.
    nonisolated(unsafe) private static var kinds: Set<String> = []
    /// Files that passed (a file is probed once per process).
    nonisolated(unsafe) private static var passed: Set<String> = []
    private static let lock = NSLock()

    /// First thing in `main`. In a probe child: runs the reader of the requested
    /// kind over the file and exits (0: read, 1: the reader's error on stderr).
    /// Otherwise records the kinds, so that `check` probes them, and returns.
    public static func runIfRequested(readers: [String: (String) throws -> Void]) {
        guard let request = getenv(requestVariable).map({ String(cString: $0) }) else {
            lock.withLock { kinds = Set(readers.keys) }
            return
        }
        let parts = request.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let read = readers[parts[0]] else {
            FileHandle.standardError.write(Data("probe: unknown request \(request)\n".utf8))
            exit(2)
        }
        do { try read(parts[1]) } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            exit(1)
        }
        exit(0)
    }

    /// Parent side: reads `path` as `kind` in a child first. Throws when the child
    /// crashed or hung; returns when it ended (successfully or with a reader error),
    /// when probing is off, or when this executable registered no reader of `kind`.
    public static func check(_ path: String, kind: String, timeout: Double = defaultTimeout) throws {
        if let s = getenv(switchVariable), String(cString: s) == "0" { return }
        let (known, done) = lock.withLock { (kinds.contains(kind), passed.contains(path)) }
        guard known, !done else { return }
        var environment = ProcessInfo.processInfo.environment
        environment[requestVariable] = "\(kind):\(path)"
        switch run("/proc/self/exe", arguments: [CommandLine.arguments.first ?? "mancs"], environment: environment,
                   timeout: timeout) {
        case .signaled(let signal):
            throw HDF5Error("\(path): damaged HDF5 file: reading it crashed libhdf5 (signal \(signal)); refused")
        case .timedOut:
            throw HDF5Error("\(path): damaged HDF5 file: reading it did not finish within \(Int(timeout)) s; refused")
        case .exited(0, _):
            lock.withLock { _ = passed.insert(path) }
        case .exited, .spawnFailed:
            return  // the caller's own read reports the reader's error (or reads without a probe)
        }
    }

    public enum Outcome: Equatable, Sendable {
        /// Exit status and the last 64 KiB of the child's stderr.
        case exited(Int32, String)
        case signaled(Int32)
        /// Killed (SIGKILL) after the timeout.
        case timedOut
        case spawnFailed(Int32)
    }

    /// Spawns `executable` with `arguments` as its argv (argv[0] first; stdin and stdout /dev/null, stderr captured), waits at
    /// most `timeout` seconds, and kills it after that.
    public static func run(_ executable: String, arguments: [String], environment: [String: String],
                           timeout: Double) -> Outcome {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { return .spawnFailed(errno) }
        defer { close(pipeEnds[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeEnds[1], 2)
        posix_spawn_file_actions_addclose(&actions, pipeEnds[0])
        posix_spawn_file_actions_addclose(&actions, pipeEnds[1])
        // The parent may block or catch signals (mancs-dist's stop handling): the child starts clean.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t(), defaults = sigset_t()
        sigemptyset(&noSignals)
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGUSR1, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        close(pipeEnds[1])
        guard rc == 0 else { return .spawnFailed(rc) }

        var stderrBytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, timeout) * 1e9)  // monotonic
        var status: Int32 = 0
        while true {
            // Drain stderr (a full pipe would block the child), at most 20 ms a turn.
            var pfd = pollfd(fd: pipeEnds[0], events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 20) > 0 {
                let n = read(pipeEnds[0], &buffer, buffer.count)
                if n > 0 {
                    stderrBytes += buffer[0..<n]
                    if stderrBytes.count > 65536 { stderrBytes.removeFirst(stderrBytes.count - 65536) }
                } else if n == 0 {
                    usleep(2000)  // closed: the child is exiting
                }
            }
            let w = waitpid(pid, &status, WNOHANG)
            if w == pid { break }
            if w < 0 && errno != EINTR { return .spawnFailed(errno) }
            if DispatchTime.now().uptimeNanoseconds >= deadline {
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                return .timedOut
            }
        }
        var pfd = pollfd(fd: pipeEnds[0], events: Int16(POLLIN), revents: 0)
        while poll(&pfd, 1, 0) > 0, case let n = read(pipeEnds[0], &buffer, buffer.count), n > 0 {
            stderrBytes += buffer[0..<n]
        }
        let signal = status & 0x7f
        if signal != 0 { return .signaled(signal) }
        return .exited((status >> 8) & 0xff, String(decoding: stderrBytes.suffix(65536), as: UTF8.self))
    }
}
