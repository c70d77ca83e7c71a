import Foundation
import HDF5Kit
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The child-process helper of `FileProbe` (probing untrusted HDF5 files):
/// each way a child can end is told apart, a hang is killed at the timeout.
@Suite struct FileProbeTests {
    func sh(_ script: String, timeout: Double = 10) -> FileProbe.Outcome {
        FileProbe.run("/bin/sh", arguments: ["sh", "-c", script], environment: ["PATH": "/usr/bin:/bin"], timeout: timeout)
    }

    @Test func exitZero() {
        #expect(sh("exit 0") == .exited(0, ""))
    }

    @Test func exitOneWithItsMessage() {
        #expect(sh("echo 'x.h5: not a features file' >&2; exit 1") == .exited(1, "x.h5: not a features file\n"))
    }

    @Test func largeStderrDoesNotBlockTheChild() {
        // More than a pipe holds (64 KiB): the parent must drain while it waits.
        guard case .exited(0, let text) = sh("head -c 300000 /dev/zero | tr '\\0' x >&2; exit 0") else {
            Issue.record("expected exit 0"); return
        }
        #expect(text.count == 65536)  // the last 64 KiB kept
    }

    @Test func deathBySignal() {
        #expect(sh("kill -SEGV $$") == .signaled(SIGSEGV, ""))
    }

    @Test func deathBySignalKeepsItsStderr() {
        // How a Swift allocation refused by the child's memory limit is told from a libhdf5 crash.
        #expect(sh("echo 'Fatal error: failed to allocate 1073741856 bytes of memory with alignment 8' >&2; kill -ABRT $$")
                == .signaled(SIGABRT, "Fatal error: failed to allocate 1073741856 bytes of memory with alignment 8\n"))
    }

    @Test func hangIsKilledAtTheTimeout() {
        let start = Date()
        #expect(sh("sleep 30", timeout: 0.5) == .timedOut)
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func environmentReachesTheChild() {
        let outcome = FileProbe.run("/bin/sh", arguments: ["sh", "-c", "echo \"$MANCS_PROBE_FILE\" >&2"],
                                    environment: ["MANCS_PROBE_FILE": "features:/tmp/a.h5"], timeout: 10)
        #expect(outcome == .exited(0, "features:/tmp/a.h5\n"))
    }

    @Test func missingExecutableIsASpawnFailure() {
        guard case .spawnFailed = FileProbe.run("/nonexistent/probe", arguments: ["probe"], environment: [:], timeout: 5) else {
            Issue.record("expected a spawn failure"); return
        }
    }

    @Test func checkIsANoOpWithoutRegisteredReaders() throws {
        // A test binary registered no reader: no child is spawned (it would rerun the tests).
        try FileProbe.check("/nonexistent.h5", kind: "checkpoint")
    }

    // MARK: the child's memory limit

    @Test func memoryBudgetDefaultsToFourGiBOrFourTimesTheFile() {
        #expect(FileProbe.memoryBudget(fileBytes: 450 << 20, environment: [:]) == 4 << 30)
        #expect(FileProbe.memoryBudget(fileBytes: 3 << 30, environment: [:]) == 12 << 30)
        #expect(FileProbe.memoryBudget(fileBytes: Int.max, environment: [:]) == nil)  // no overflow
    }

    @Test func memoryBudgetOverride() {
        #expect(FileProbe.memoryBudget(fileBytes: 1 << 30, environment: ["MANCS_PROBE_MEMORY_MB": "100"]) == 100 << 20)
        #expect(FileProbe.memoryBudget(fileBytes: 1 << 30, environment: ["MANCS_PROBE_MEMORY_MB": "0"]) == nil)
        // Not a number: the default.
        #expect(FileProbe.memoryBudget(fileBytes: 1 << 30, environment: ["MANCS_PROBE_MEMORY_MB": "lots"]) == 4 << 30)
    }

    @Test func addressSpaceLimitMakesLargerAllocationsFail() throws {
        // What the probe child does first: here in the test process, for a moment,
        // with the soft limit restored afterwards (the hard limit is not touched).
        var saved = rlimit()
        #expect(getrlimit(Int32(RLIMIT_AS.rawValue), &saved) == 0)
        let before = malloc(512 << 20)
        #expect(before != nil)  // possible without the limit
        free(before)
        let baseline = FileProbe.limitAddressSpace(budgetBytes: 64 << 20)
        let big = malloc(512 << 20), small = malloc(1 << 20)
        var restored = saved
        let reset = setrlimit(Int32(RLIMIT_AS.rawValue), &restored)
        free(big); free(small)
        #expect(reset == 0)
        #expect(baseline != nil)
        #expect(big == nil, "512 MiB allocated under a 64 MiB budget")
        #expect(small != nil)
    }

    // MARK: paths that are not regular files

    @Test func fifoIsRefusedAtOnce() throws {
        let fifo = SharedFiles.temporaryDirectory("probe").appendingPathComponent("fifo.h5").path
        #expect(mkfifo(fifo, 0o600) == 0)
        // Without the check, libhdf5's open would wait for a writer: this one opens
        // the FIFO as soon as a reader does and closes it at once, so that a missing
        // check shows as a wrong error rather than a hang.
        let writer = Thread {
            let fd = open(fifo, O_WRONLY)
            if fd >= 0 { close(fd) }
        }
        writer.start()
        let start = Date()
        var message = ""
        do { _ = try HDF5File(openForReading: fifo) } catch { message = "\(error)" }
        #expect(message == "\(fifo): not a regular file")
        #expect(throws: HDF5Error.self) { try FileProbe.requireRegularFile(fifo) }
        #expect(Date().timeIntervalSince(start) < 5)
        // Release the writer (it waits for a reader).
        let fd = open(fifo, O_RDONLY | O_NONBLOCK)
        usleep(100_000)
        if fd >= 0 { close(fd) }
    }

    @Test func folderIsNotARegularFile() throws {
        let dir = SharedFiles.temporaryDirectory("probe").path
        var message = ""
        do { _ = try HDF5File(openForReading: dir) } catch { message = "\(error)" }
        #expect(message == "\(dir): not a regular file")
    }

    @Test func missingFileAndSymlinkToARegularFile() throws {
        let dir = SharedFiles.temporaryDirectory("probe")
        let file = dir.appendingPathComponent("a.h5").path, link = dir.appendingPathComponent("link.h5").path
        do {
            let f = try HDF5File(creating: file)
            try f.root.write("x", [Float(1), 2], shape: [2])
        }
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: file)
        let f = try HDF5File(openForReading: link)  // followed: a link to a regular file is fine
        #expect(try f.root.read("x", as: Float.self).values.count == 2)
        var message = ""
        do { _ = try HDF5File(openForReading: dir.appendingPathComponent("absent.h5").path) } catch { message = "\(error)" }
        #expect(message.hasSuffix("absent.h5: no such file"))
    }
}
