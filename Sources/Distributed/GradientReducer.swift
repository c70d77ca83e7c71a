import CMPI
import Foundation

/// Averages a flat gradient buffer across ranks in fixed buckets, overlapping
/// the allreduce of finished buckets with the rest of backward.
///
/// Bucket 0 covers elements [0, F) with F = firstBucketBytes/4, bucket k > 0
/// covers [F + (k-1)*B, F + k*B) with B = bucketBytes/4 (the last one shorter):
/// the boundaries depend only on the buffer and bucket sizes, never on timing, so
/// the order of sums (and the result) is the same run after run. Bucket 0 is small
/// because the lowest offsets (the stem) are final last, when nothing is left to
/// hide their allreduce behind (PyTorch DDP does the same with a 1 MB bucket).
/// Buckets start in the order their last range is reported, which is the same
/// on every rank (the same model reports the same ranges), as MPI requires for
/// collectives.
///
/// Per step: `beginStep()`, then `gradientsReady(range)` as backward finishes
/// gradients (any order; usually decreasing offsets), `progress()` now and then
/// (polling mode), and `finish()`, which waits and divides by the world size.
/// No other collective may be made on `comm` between `beginStep` and `finish`
/// (collectives on another communicator, such as `ShardGroup`'s duplicate, may).
/// In thread mode call `shutdown()` before `Communicator.finalize()`.
public final class GradientReducer: @unchecked Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// MPI_Iallreduce per bucket, advanced by `progress()` calls from the
        /// model between layers (Open MPI 4.1 has no progress thread). The
        /// default: measured on the real trainer (2 ranks, ResNet-50, one core
        /// each) it was ~15% faster than `.thread`, whose blocking allreduce
        /// spins on the core the compute needs.
        case polling
        /// A dedicated thread runs a blocking MPI_Allreduce per bucket as buckets
        /// become ready; needs MPI_THREAD_MULTIPLE. Open MPI's blocking allreduce
        /// of a 25 MB bucket is 2.5-4x faster than its non-blocking one, so this
        /// may win where ranks have a spare core (`--bind-to none`, more cores
        /// than compute threads) or talk over a network.
        case thread
    }

    public let comm: Communicator
    public let gradients: UnsafeMutableBufferPointer<Float>
    public let bucketElements: Int
    public let firstBucketElements: Int
    public let mode: Mode
    /// Element ranges of the buckets, in offset order.
    public let buckets: [Range<Int>]

    private var readyCount: [Int]
    private var launched: [Bool]
    private var requests: [MPI_Request?]
    private var pending: [Bool]
    private var launchOrder: [Int] = []
    private var inStep = false

    // Thread mode: a queue of bucket indices, served by `worker`.
    private let condition = NSCondition()
    private var queue: [Int] = []
    private var completed = 0
    private var workerError: Error?
    private var stopping = false
    private var worker: Thread?

    /// - Parameters:
    ///   - bucketBytes: bytes per bucket (25 MiB by default, as in PyTorch DDP).
    ///   - firstBucketBytes: bytes of bucket 0 (1 MiB by default; at most bucketBytes).
    public init(comm: Communicator, gradients: UnsafeMutableBufferPointer<Float>,
                bucketBytes: Int = 25 << 20, firstBucketBytes: Int = 1 << 20, mode: Mode? = nil) throws {
        precondition(bucketBytes >= 4 && firstBucketBytes >= 4,
                     "bucket sizes must hold at least one float, got \(bucketBytes) and \(firstBucketBytes) bytes")
        self.comm = comm
        self.gradients = gradients
        self.mode = try mode ?? Self.defaultMode()
        bucketElements = bucketBytes / 4
        firstBucketElements = min(firstBucketBytes, bucketBytes) / 4
        let b = Self.bucketRanges(count: gradients.count, bucketElements: bucketElements,
                                  firstBucketElements: firstBucketElements)
        buckets = b
        readyCount = [Int](repeating: 0, count: b.count)
        launched = [Bool](repeating: false, count: b.count)
        requests = [MPI_Request?](repeating: nil, count: b.count)
        pending = [Bool](repeating: false, count: b.count)
        if self.mode == .thread && comm.size > 1 {
            guard comm.threadMultiple else {
                throw MPIError("gradient reducer: thread mode needs MPI_THREAD_MULTIPLE, which this MPI did not grant")
            }
            // The thread keeps the reducer alive until `shutdown()`.
            let t = Thread { self.serve() }
            t.name = "mancs-allreduce"
            worker = t
            t.start()
        }
    }

    /// Stops the communication thread (thread mode). Call before `finalize()`.
    public func shutdown() {
        condition.lock(); stopping = true; condition.broadcast(); condition.unlock()
        worker = nil
    }

    /// The bucket layout for a buffer of `count` floats (see the type's comment).
    public static func bucketRanges(count: Int, bucketElements: Int = (25 << 20) / 4,
                                    firstBucketElements: Int = (1 << 20) / 4) -> [Range<Int>] {
        var b: [Range<Int>] = []
        var start = 0
        while start < count {
            let end = min(start + (b.isEmpty ? firstBucketElements : bucketElements), count)
            b.append(start..<end)
            start = end
        }
        return b
    }

    /// The bucket holding element `offset`.
    private func bucketIndex(_ offset: Int) -> Int {
        offset < firstBucketElements ? 0 : 1 + (offset - firstBucketElements) / bucketElements
    }

    /// `.polling`, unless the environment variable MANCS_REDUCER says `thread`
    /// (a knob for measuring both on a real run).
    public static func defaultMode() throws -> Mode {
        guard let name = ProcessInfo.processInfo.environment["MANCS_REDUCER"], !name.isEmpty else { return .polling }
        guard let m = Mode(rawValue: name) else {
            throw MPIError("MANCS_REDUCER must be \(Mode.allCases.map(\.rawValue).joined(separator: " or ")), got \"\(name)\"")
        }
        return m
    }

    // MARK: Step

    public func beginStep() {
        precondition(!inStep, "GradientReducer.beginStep called twice without finish()")
        inStep = true
        for i in buckets.indices { readyCount[i] = 0; launched[i] = false; pending[i] = false }
        launchOrder.removeAll(keepingCapacity: true)
        condition.lock(); completed = 0; workerError = nil; condition.unlock()
    }

    /// Marks a range of the buffer as final for this step; buckets it completes start at once.
    public func gradientsReady(_ range: Range<Int>) throws {
        precondition(inStep, "GradientReducer.gradientsReady outside beginStep()/finish()")
        precondition(range.lowerBound >= 0 && range.upperBound <= gradients.count,
                     "gradient range \(range) outside the buffer of \(gradients.count)")
        guard !range.isEmpty, comm.size > 1 else { return }
        var k = bucketIndex(range.lowerBound)
        while k < buckets.count && buckets[k].lowerBound < range.upperBound {
            let overlap = buckets[k].clamped(to: range)
            readyCount[k] += overlap.count
            precondition(readyCount[k] <= buckets[k].count, "gradient range \(range) reported twice in one step")
            if readyCount[k] == buckets[k].count { try launch(k) }
            k += 1
        }
    }

    /// Lets MPI advance the buckets in flight (cheap; call between layers in polling mode).
    public func progress() throws {
        guard mode == .polling, comm.size > 1, !launchOrder.isEmpty else { return }
        var flag: Int32 = 0
        for k in launchOrder where pending[k] {
            // Testing one request drives the whole progress engine.
            try check(MPI_Test(&requests[k], &flag, mancs_mpi_status_ignore()), "test of gradient bucket \(k)")
            if flag != 0 { pending[k] = false } else { break }
        }
    }

    /// Starts what is not started yet (in decreasing bucket order), waits for
    /// every bucket, and divides the sums by the world size.
    public func finish() throws {
        precondition(inStep, "GradientReducer.finish without beginStep()")
        inStep = false
        guard comm.size > 1 else { return }
        for k in buckets.indices.reversed() where !launched[k] { try launch(k) }
        switch mode {
        case .polling:
            for k in launchOrder where pending[k] {
                try check(MPI_Wait(&requests[k], mancs_mpi_status_ignore()), "wait for gradient bucket \(k)")
                pending[k] = false
            }
        case .thread:
            condition.lock()
            while completed < buckets.count && workerError == nil { condition.wait() }
            let err = workerError
            condition.unlock()
            if let err { throw err }
        }
        let scale = Float(comm.size)
        let g = gradients
        for i in g.indices { g[i] /= scale }
    }

    // MARK: Internals

    private func launch(_ k: Int) throws {
        precondition(!launched[k], "gradient bucket \(k) launched twice")
        launched[k] = true
        launchOrder.append(k)
        let r = buckets[k]
        switch mode {
        case .polling:
            try check(MPI_Iallreduce(mancs_mpi_in_place(), gradients.baseAddress! + r.lowerBound, Int32(r.count),
                                     mancs_mpi_float(), mancs_mpi_sum(), comm.comm, &requests[k]), "allreduce of gradient bucket \(k)")
            pending[k] = true
        case .thread:
            condition.lock(); queue.append(k); condition.signal(); condition.unlock()
        }
    }

    private func serve() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let k = queue.removeFirst()
            condition.unlock()
            let r = buckets[k]
            let rc = MPI_Allreduce(mancs_mpi_in_place(), gradients.baseAddress! + r.lowerBound, Int32(r.count),
                                   mancs_mpi_float(), mancs_mpi_sum(), comm.comm)
            condition.lock()
            if rc != 0 { workerError = mpiError(rc, k) }
            completed += 1
            condition.broadcast()
            condition.unlock()
        }
    }

    private func mpiError(_ rc: Int32, _ k: Int) -> Error {
        do { try check(rc, "allreduce of gradient bucket \(k)"); return MPIError("allreduce of gradient bucket \(k) failed") } catch { return error }
    }
}
