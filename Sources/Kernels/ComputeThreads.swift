import CBLAS
import Foundation
import Synchronization

// The kernels' own threads. OpenBLAS's threading scales poorly on the network's
// medium-sized GEMMs (e.g. 131072 x 64 x 256 runs at 105-115 GFLOP/s on two threads,
// against 145-175 when each of two threads runs single-threaded OpenBLAS on half of
// the rows), and it leaves everything between GEMMs on one core. So OpenBLAS always
// runs single-threaded, and the kernels split their work over this pool instead:
// GEMMs by rows, columns or the reduction (`sgemm`), BatchNorm by blocks of rows,
// im2col/col2im by image rows, elementwise kernels by ranges. Splits depend only
// on the shape and the thread count, so results are deterministic for a given
// `--threads`.
//
// Cores are not equally fast: hybrid CPUs mix fast and slow cores, and on shared
// virtual machines one vCPU often runs 20-25% slower than the other for seconds at a
// time (measured on the Xeon VM: 113 against 140-150 GFLOP/s single-threaded sgemm on
// its two vCPUs). Equal halves then leave the fast thread waiting for the slow one. So
// the large splits (GEMM rows/columns/reduction, ranges, BatchNorm's block runs) give
// each thread its usual share (`partRange`) cut into pieces that shrink toward its end
// (`PieceSchedule`); a thread runs its own pieces from the front, then takes pieces
// from the back of a slower thread's share (`ComputePool.dispatchPieces`). Each thread
// still streams through its own rows (the rows its part of the previous kernel
// wrote), and only the last, small pieces move. The pieces depend only on the shape
// and the thread count, and a piece's result does not depend on the thread that runs
// it, so results stay deterministic.

/// Sets how many threads the kernels use (the trainer's `--threads`): OpenBLAS is
/// set to one thread and kernels split their work over `n` threads (the caller and
/// `n - 1` workers). Call at start-up, never from inside a kernel.
public func setComputeThreads(_ n: Int) {
    openblas_set_num_threads(1)
    let size = max(1, n)
    if ComputePool.shared?.size == size || (size == 1 && ComputePool.shared == nil) { return }
    ComputePool.shared?.stop()
    ComputePool.shared = size > 1 ? ComputePool(size: size) : nil
}

/// The number of threads kernels split work over (1 when no pool is running).
public var computeThreads: Int { ComputePool.shared?.size ?? 1 }

/// Runs `body(part)` for every part in 0..<parts, where parts is the pool size, on
/// the pool's threads (part 0 on the caller), and returns when all are done. Runs
/// `body(0)` alone with parts = 1 when there is no pool, when the pool is already
/// busy (a kernel called from another thread or from inside a part), or when
/// `work` (a rough count of floating-point operations) is too small to be worth
/// waking a thread.
@inline(__always)
func forEachPart(work: Int, _ body: (_ part: Int, _ parts: Int) -> Void) {
    withComputePool(work: work) { pool in
        if let pool { pool.dispatch(body) } else { body(0, 1) }
    }
}

/// Calls `body` with the pool held by this caller (so several `dispatch`es and the
/// pool's scratch belong to one operation), or with nil when there is no pool, it is
/// busy, or `work` is too small (see `forEachPart`).
@inline(__always)
func withComputePool(work: Int, _ body: (ComputePool?) -> Void) {
    guard let pool = ComputePool.shared, work >= ComputePool.minimumWork,
          pool.tryAcquire() else { body(nil); return }
    defer { pool.release() }
    body(pool)
}

/// Splits 0..<count into `parts` contiguous ranges whose bounds are multiples of
/// `align` (except the end); part `part`'s range (possibly empty).
@inline(__always)
func partRange(_ count: Int, part: Int, parts: Int, align: Int = 1) -> Range<Int> {
    let units = (count + align - 1) / align
    let lo = min(count, (units * part / parts) * align)
    let hi = min(count, (units * (part + 1) / parts) * align)
    return lo..<hi
}

/// Pieces of 0..<count for `dispatchPieces`: part t's share (`partRange` in units of
/// `align`) is cut into pieces of half what is left of it, at least 1/16 of the share
/// and `minPiece` (callers whose pieces cost a fixed overhead, e.g. GEMMs that pack
/// their other operand per call). `bounds`: 0 = b[0] < ... < b.last = count, inner
/// bounds multiples of `align`; part t's pieces are homes[t]..<homes[t + 1]. With
/// `maxPieces` (callers that keep one result per piece) one piece per part when the
/// schedule would need more. Depends only on its arguments.
struct PieceSchedule: Equatable {
    var bounds: [Int]
    var homes: [Int]
    var pieces: Int { bounds.count - 1 }
    func range(_ piece: Int) -> Range<Int> { bounds[piece]..<bounds[piece + 1] }

    init(_ count: Int, parts: Int, align: Int = 1, minPiece: Int = 1, maxPieces: Int = .max) {
        let parts = max(1, parts)
        let units = (max(0, count) + align - 1) / align
        bounds = [0]; homes = [0]
        for part in 0..<parts {
            let share = partRange(units, part: part, parts: parts)
            let least = max(1, share.count / 16, (minPiece + align - 1) / align)
            var done = share.lowerBound
            while done < share.upperBound {
                done = min(share.upperBound, done + max(least, (share.upperBound - done + 1) / 2))
                bounds.append(min(count, done * align))
            }
            homes.append(bounds.count - 1)
        }
        if bounds.count - 1 > maxPieces || parts == 1 {
            bounds = (0...parts).map { $0 == parts ? max(0, count) : min(max(0, count), (units * $0 / parts) * align) }
            homes = Array(0...parts)
        }
    }
}

/// Calls `body(range)` for the `PieceSchedule` pieces of 0..<count on the compute
/// threads (`dispatchPieces`), or once with 0..<count when there is no pool, it is
/// busy or the work (`count * workPerItem`) is small.
@inline(__always)
func forEachPiece(_ count: Int, workPerItem: Int, align: Int, _ body: (Range<Int>) -> Void) {
    guard count > 0 else { return }
    withComputePool(work: count &* workPerItem) { pool in
        guard let pool else { body(0..<count); return }
        let schedule = PieceSchedule(count, parts: pool.size, align: align)
        pool.dispatchPieces(schedule) { p, _ in body(schedule.range(p)) }
    }
}

/// A fixed set of worker threads that spin briefly for the next job, then sleep.
final class ComputePool: @unchecked Sendable {
    /// Set only by `setComputeThreads` (start-up, single-threaded).
    nonisolated(unsafe) static var shared: ComputePool?

    /// Below this many operations a kernel runs on the caller alone (tests lower it to
    /// split even small cases).
    nonisolated(unsafe) static var minimumWork = 1 << 17

    /// Jobs dispatched to the workers so far (tests check that a split happened).
    let dispatched = Atomic<Int>(0)

    /// How long an idle worker spins before it sleeps (between kernels of one step
    /// the gaps are far shorter; between steps it sleeps).
    static let spinNanoseconds: UInt64 = 200_000

    let size: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let workers: [Worker]
    /// The current job; written before `generation` is bumped (release), read by
    /// workers after they see the bump (acquire).
    private var job: ((Int, Int) -> Void)?

    private final class Worker: @unchecked Sendable {
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
    }

    init(size: Int) {
        self.size = size
        claims = .allocate(capacity: size)
        for part in 0..<size { (claims + part).initialize(to: Atomic<Int>(0)) }
        workers = (1..<size).map { _ in Worker() }
        for (i, w) in workers.enumerated() {
            // The thread keeps the pool alive until `stop()` ends it.
            let t = Thread { self.workerLoop(index: i + 1, worker: w) }
            t.name = "mancs-kernels-\(i + 1)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    deinit {
        claims.deinitialize(count: size)
        claims.deallocate()
    }

    func tryAcquire() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
    }

    func release() { busy.store(false, ordering: .releasing) }

    /// Grow-only scratch owned by the pool's current holder (allocated on first use,
    /// then reused, so steady-state training allocates nothing).
    func scratch(floats: Int) -> UnsafeMutablePointer<Float> {
        if floats > scratchCapacity {
            scratchBase?.deallocate()
            scratchBase = .allocate(capacity: floats)
            scratchCapacity = floats
        }
        return scratchBase!
    }
    private var scratchBase: UnsafeMutablePointer<Float>?
    private var scratchCapacity = 0

    /// Runs `body(part, size)` on every thread of the pool, part 0 on the caller,
    /// and returns when all parts are done. The caller must hold the pool.
    func dispatch(_ body: (Int, Int) -> Void) {
        dispatched.add(1, ordering: .relaxed)
        withoutActuallyEscaping(body) { body in
            job = body
            pending.store(size - 1, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            for w in workers where w.sleeping.exchange(false, ordering: .sequentiallyConsistent) {
                w.wake.signal()
            }
            body(0, size)
            var spins = 0
            while pending.load(ordering: .acquiring) != 0 {
                spins &+= 1
                if spins & 1023 == 0 { sched_yield() } else { mancs_cpu_relax() }
            }
            job = nil
        }
    }

    /// Runs `body(piece)` for every piece of `schedule` on the pool's threads and
    /// returns when all are done: each thread runs its own pieces (`schedule.homes`)
    /// from the front, then takes pieces from the back of the other threads' shares
    /// until none is left. `body` gets the piece and the part (thread) running it. The
    /// caller must hold the pool; `schedule` has `size` parts.
    func dispatchPieces(_ schedule: PieceSchedule, _ body: (_ piece: Int, _ part: Int) -> Void) {
        precondition(schedule.homes.count == size + 1, "dispatchPieces: a schedule for \(schedule.homes.count - 1) parts on \(size) threads")
        // Each part's unclaimed pieces front..<back, packed as front | back << 32
        // (published to the workers by dispatch's generation bump).
        for part in 0..<size { claims[part].store(schedule.homes[part] | schedule.homes[part + 1] << 32, ordering: .relaxed) }
        dispatch { part, parts in
            while let piece = claim(part, fromBack: false) { body(piece, part) }
            for offset in 1..<parts {
                let other = (part + offset) % parts
                while let piece = claim(other, fromBack: true) { body(piece, part) }
            }
        }
    }

    /// Takes the first (the owner) or last (another thread) unclaimed piece of `part`'s share.
    private func claim(_ part: Int, fromBack: Bool) -> Int? {
        var packed = claims[part].load(ordering: .relaxed)
        while true {
            let front = packed & 0xFFFF_FFFF, back = packed >> 32
            guard front < back else { return nil }
            let taken = fromBack ? front | (back - 1) << 32 : (front + 1) | back << 32
            let (exchanged, original) = claims[part].compareExchange(expected: packed, desired: taken, ordering: .relaxed)
            if exchanged { return fromBack ? back - 1 : front }
            packed = original
        }
    }
    private let claims: UnsafeMutablePointer<Atomic<Int>>

    /// Ends the workers (they finish when they next wake).
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        generation.add(1, ordering: .sequentiallyConsistent)
        for w in workers where w.sleeping.exchange(false, ordering: .sequentiallyConsistent) { w.wake.signal() }
    }

    private func workerLoop(index: Int, worker w: Worker) {
        var seen = 0  // no job can have been dispatched before init returned
        while true {
            var spins = 0
            var spinStart: UInt64 = 0
            var g = generation.load(ordering: .acquiring)
            while g == seen {
                spins &+= 1
                if spins & 255 != 0 {
                    mancs_cpu_relax()
                } else if spinStart == 0 {
                    spinStart = DispatchTime.now().uptimeNanoseconds
                } else if DispatchTime.now().uptimeNanoseconds - spinStart > Self.spinNanoseconds {
                    // Sleep. The dispatcher bumps `generation` before it clears `sleeping`,
                    // so either we see the bump here, or it sees our flag and signals.
                    w.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if generation.load(ordering: .sequentiallyConsistent) != seen {
                        if !w.sleeping.exchange(false, ordering: .sequentiallyConsistent) { w.wake.wait() }
                    } else {
                        w.wake.wait()
                    }
                    spins = 0
                    spinStart = 0
                }
                g = generation.load(ordering: .acquiring)
            }
            seen = g
            if stopping.load(ordering: .acquiring) { return }
            job!(index, size)
            pending.subtract(1, ordering: .releasing)
        }
    }
}

/// Calls `body(range)` for disjoint contiguous ranges covering 0..<count (bounds
/// multiples of `align`), shared among the compute threads as they come free
/// (`forEachPiece`), or once with 0..<count when the work (`count * workPerItem`) is
/// small. For loops whose items are independent (kernels, the optimiser).
@inline(__always)
public func parallelRanges(_ count: Int, workPerItem: Int = 1, align: Int = 16, _ body: (Range<Int>) -> Void) {
    forEachPiece(count, workPerItem: workPerItem, align: align) { range in
        if !range.isEmpty { body(range) }
    }
}
