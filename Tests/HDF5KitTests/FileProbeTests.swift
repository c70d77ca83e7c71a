import Foundation
import HDF5Kit
import Testing

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
        #expect(sh("kill -SEGV $$") == .signaled(SIGSEGV))
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
}
