import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads an untrusted HDF5 file first in a short-lived child process: libhdf5
/// 1.10.8 itself crashes on some crafted files (docs/security.md), which no
/// wrapper around its API can prevent. A child that dies by a signal, does
/// not finish within `timeout`, or runs into its memory limit
/// (`memoryBudget`), makes the file refused with one clear error; otherwise
/// the caller reads the file itself (a reader error then comes from that read,
/// worded as without the probe: the callers' own reads differ from the child's
/// reader, see `check`). A path that is not a regular file (a FIFO would make
/// libhdf5's open wait for a writer) is refused before any child is started.
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
    /// Overrides the child's memory budget, in MiB (0: no limit).
    public static let memoryVariable = "MANCS_PROBE_MEMORY_MB"
    /// The child's exit status when its read failed after running into the memory limit.
    static let memoryExitStatus: Int32 = 3

    /// Kinds this executable can read in a child, set by `runIfRequested`.
    nonisolated(unsafe) private static var kinds: Set<String> = []
    /// Files that passed (a file is probed once per process).
    nonisolated(unsafe) private static var passed: Set<String> = []
    private static let lock = NSLock()

    /// First thing in `main`. In a probe child: limits its memory (`memoryBudget`),
    /// runs the reader of the requested kind over the file and exits (0: read,
    /// 1: the reader's error on stderr, 3: the read failed on the memory limit).
    /// It ends with `_exit`, not `exit`: exit handlers have nothing to do here, and
    /// OpenBLAS's joins its workers (one that cannot get its buffer under the limit
    /// would keep it waiting until the timeout).
    /// Otherwise records the kinds, so that `check` probes them, and returns.
    public static func runIfRequested(readers: [String: (String) throws -> Void]) {
        guard let request = getenv(requestVariable).map({ String(cString: $0) }) else {
            lock.withLock { kinds = Set(readers.keys) }
            return
        }
        let parts = request.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let read = readers[parts[0]] else {
            FileHandle.standardError.write(Data("probe: unknown request \(request)\n".utf8))
            _exit(2)
        }
        let path = parts[1]
        let budget = memoryBudget(fileBytes: fileSize(path), environment: ProcessInfo.processInfo.environment)
        let baseline = budget.map { limitAddressSpace(budgetBytes: $0) } ?? nil
        errno = 0
        do { try read(path) } catch {
            // An allocation refused by the limit: libhdf5 and HDF5Kit turn it into an
            // ordinary reader error, which the parent must not reproduce by reading the
            // file itself without a limit. Told apart by errno (a refused mmap/brk leaves
            // ENOMEM) or by a peak that used half the budget or more (libhdf5 growing in a loop).
            let failedAllocation = errno == ENOMEM
            if let budget, let baseline, failedAllocation
                || (virtualMemoryKiB("VmPeak").map { ($0 - baseline) * 1024 >= budget / 2 } ?? false) {
                FileHandle.standardError.write(Data("\(error)\nprobe: memory limit of \(budget >> 20) MiB reached\n".utf8))
                _exit(memoryExitStatus)
            }
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            _exit(1)
        }
        _exit(0)
    }

    /// The address space a probe child may use on top of what it had mapped when
    /// it started (nil: no limit). The readers check every size a file claims
    /// before allocating (HDF5Limits), so a genuine file needs about its own size
    /// plus the arrays read from it: the child that verifies a ResNet-50 checkpoint
    /// with Adam state (422 MB) peaks at 111 MiB resident (it reads tensor by
    /// tensor); that of a Market-size features file (190 MB) at 219 MB. The default, the larger of 4 GiB and 4 times the
    /// file size, leaves room for that (and for deflate-compressed datasets
    /// written by other tools) while stopping a damaged file on which libhdf5
    /// allocates in a loop (a fuzzed file grew a child to 15 GB). Measured from
    /// the start-up mapping, not from zero: thread stacks and per-thread malloc
    /// arenas reserve address space by the number of cores.
    /// `MANCS_PROBE_MEMORY_MB` overrides it (a number of MiB; 0: no limit).
    public static func memoryBudget(fileBytes: Int, environment: [String: String]) -> Int? {
        if let text = environment[memoryVariable], let mib = Int(text.trimmingCharacters(in: .whitespaces)), mib >= 0 {
            return mib == 0 ? nil : mib.multipliedReportingOverflow(by: 1 << 20).overflow ? nil : mib << 20
        }
        let (scaled, overflow) = max(0, fileBytes).multipliedReportingOverflow(by: 4)
        return overflow ? nil : max(4 << 30, scaled)
    }

    /// Lowers this process's soft RLIMIT_AS to what is mapped now plus
    /// `budgetBytes` (never above the hard limit), so that allocations beyond it
    /// fail (malloc returns NULL, a Swift allocation traps) instead of growing.
    /// Returns the mapping it measured from, in KiB (nil: not set). Only the soft
    /// limit, so that a test can restore it; the probe child is short-lived.
    @discardableResult
    public static func limitAddressSpace(budgetBytes: Int) -> Int? {
        guard let now = virtualMemoryKiB("VmSize") else { return nil }
        var current = rlimit()
        guard getrlimit(Int32(RLIMIT_AS.rawValue), &current) == 0 else { return nil }
        let (wanted, overflow) = (now * 1024).addingReportingOverflow(max(0, budgetBytes))
        guard !overflow else { return nil }
        var limit = current
        limit.rlim_cur = min(rlim_t(wanted), current.rlim_max)
        guard setrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0 else { return nil }
        return now
    }

    /// A `Vm...:` line of /proc/self/status (VmSize: mapped now; VmPeak: the most so far), in KiB.
    static func virtualMemoryKiB(_ field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    static func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    /// Refuses a path that is not a regular file (a FIFO, a device, a folder):
    /// libhdf5's open of a FIFO waits for a writer. Follows symbolic links (a
    /// link to a regular file is fine). The one check of every HDF5 file opened
    /// for reading (`HDF5File(openForReading:)`), and of `check` before it
    /// starts a child. A missing path: "no such file", as before this check.
    public static func requireRegularFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw HDF5Error("\(path): no such file") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw HDF5Error("\(path): not a regular file") }
    }

    /// The error of a child that ran into its memory limit.
    static func memoryRefusal(_ path: String) -> HDF5Error {
        guard let budget = memoryBudget(fileBytes: fileSize(path), environment: ProcessInfo.processInfo.environment) else {
            return HDF5Error("\(path): damaged HDF5 file: reading it ran out of memory; refused")  // MANCS_PROBE_MEMORY_MB=0
        }
        return HDF5Error("\(path): damaged HDF5 file: reading it needed more than \(budget >> 20) MiB; refused"
                         + " (\(memoryVariable) raises the limit)")
    }

    /// Parent side: reads `path` as `kind` in a child first. Throws when `path` is
    /// not a regular file, or when the child crashed, hung or ran into its memory
    /// limit; returns when it ended otherwise (successfully or with an ordinary reader
    /// error), when probing is off, or when this executable registered no reader of `kind`.
    ///
    /// A child's ordinary reader error is not thrown here: the caller's own read
    /// reports it. The child always runs the kind's full reader (`Checkpoint.verify`
    /// for every checkpoint), while the callers read differently - `mancs diff`
    /// skips datasets it cannot read as numbers, `--checkpoint`/`--pretrained`/
    /// `--resume` load weights and word their errors their own way - so the
    /// child's line would change messages and, for diff, refuse files it compares.
    public static func check(_ path: String, kind: String, timeout: Double = defaultTimeout) throws {
        if let s = getenv(switchVariable), String(cString: s) == "0" { return }
        let (known, done) = lock.withLock { (kinds.contains(kind), passed.contains(path)) }
        guard known, !done else { return }
        // A FIFO would hold the child until the timeout. A missing path is left to the
        // caller's read (its "no such file" message, as without the probe).
        var st = stat()
        if stat(path, &st) == 0 { try requireRegularFile(path) }
        var environment = ProcessInfo.processInfo.environment
        environment[requestVariable] = "\(kind):\(path)"
        // The child computes nothing: no OpenBLAS worker threads, whose 128 MiB
        // buffers (one per core, allocated as they start) would count against its memory limit.
        environment["OPENBLAS_NUM_THREADS"] = "1"
        // A crash of the child is reported in one line: no backtrace (which would
        // run under the memory limit and could push Swift's own message out of the 64 KiB kept).
        environment["SWIFT_BACKTRACE"] = "enable=no"
        switch run("/proc/self/exe", arguments: [CommandLine.arguments.first ?? "mancs"], environment: environment,
                   timeout: timeout) {
        case .signaled(_, let text) where text.contains("Fatal error: failed to allocate")
                                          || text.contains("Could not allocate memory"):
            throw memoryRefusal(path)  // a Swift allocation refused by the limit aborts (older runtimes: "Could not ...")
        case .signaled(let signal, _):
            throw HDF5Error("\(path): damaged HDF5 file: reading it crashed libhdf5 (signal \(signal)); refused")
        case .exited(memoryExitStatus, _):
            throw memoryRefusal(path)  // reading it again here, without a limit, is what the limit prevents
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
        /// The signal and the last 64 KiB of the child's stderr.
        case signaled(Int32, String)
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
        let text = String(decoding: stderrBytes.suffix(65536), as: UTF8.self)
        if signal != 0 { return .signaled(signal, text) }
        return .exited((status >> 8) & 0xff, text)
    }
}
