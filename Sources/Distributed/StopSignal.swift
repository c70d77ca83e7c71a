import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by the signal handler; read by the trainer. A lock-free atomic is the
/// only kind of state a handler may touch (async-signal-safe).
private let stopFlag = Atomic<Int32>(0)

/// Bit 0 of the flag: a stop was requested; bit 1: a SIGTERM has been received.
private let requestedBit: Int32 = 1, termBit: Int32 = 2

/// The handler of SIGTERM and SIGUSR1: only atomics and _exit (async-signal-safe).
private func stopSignalHandler(_ signal: Int32) {
    if signal == SIGTERM {
        let old = stopFlag.bitwiseOr(requestedBit | termBit, ordering: .relaxed).oldValue
        if old & termBit != 0 { _exit(128 + SIGTERM) }
    } else {
        stopFlag.bitwiseOr(requestedBit, ordering: .relaxed)
    }
}

/// SIGTERM (e.g. a scheduler's preemption) and SIGUSR1 ask the trainer to stop
/// cleanly: the handler only sets a flag; the trainer checks it once per step
/// through `anyRankRequestedStop`, so every rank stops after the same step.
/// A second SIGTERM means "now": the process exits at once (status 143)
/// without finishing anything; files are only ever renamed into place
/// complete, so nothing half-written is left where a reader would look.
public enum StopSignal {
    /// Installs the handlers for SIGTERM and SIGUSR1 (idempotent).
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = stopSignalHandler
            #else
            action.__sigaction_u.__sa_handler = stopSignalHandler
            #endif
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(sig, &action, nil)
        }
    }

    /// Whether this process received a stop signal.
    public static var stopRequested: Bool { stopFlag.load(ordering: .relaxed) != 0 }

    /// Sets (or clears) the flag by hand, as a signal would.
    public static func request(_ stop: Bool = true) { stopFlag.store(stop ? 1 : 0, ordering: .relaxed) }

    /// Collective: true on every rank when any rank was asked to stop
    /// (allreduce max of the flags). Call it at the same point of every step.
    public static func anyRankRequestedStop(_ comm: Communicator) throws -> Bool {
        try comm.allreduceMax(Int64(stopRequested ? 1 : 0)) != 0
    }
}
