import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Set by the signal handler; read by the trainer. A lock-free atomic is the
/// only kind of state a handler may touch (async-signal-safe).
private let stopFlag = Atomic<Int32>(0)

/// SIGTERM (e.g. a scheduler's preemption) and SIGUSR1 ask the trainer to stop
/// cleanly: the handler only sets a flag; the trainer checks it once per step
/// through `anyRankRequestedStop`, so every rank stops after the same step.
public enum StopSignal {
    /// Installs the handlers for SIGTERM and SIGUSR1 (idempotent).
    public static func install() {
        for sig in [SIGTERM, SIGUSR1] {
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_handler = { _ in stopFlag.store(1, ordering: .relaxed) }
            #else
            action.__sigaction_u.__sa_handler = { _ in stopFlag.store(1, ordering: .relaxed) }
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
