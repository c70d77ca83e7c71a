import Synchronization

// Time per GEMM shape, for `mancs bench --gemm-shapes`: which products of the step
// run well below the machine's sgemm rate, on the CPU at hand (the splits and the
// own kernel's limits were tuned on two CPUs; this shows where another one differs).
// It records the calls that enter `sgemm`: the 1x1 convolutions, the im2col
// convolutions, the linear layers and the point-major Winograd GEMMs. The blocked
// Winograd convolutions call the single-threaded kernel from inside their parallel
// parts and are not in it (their GEMM time is `conv_kxk_gemm` of the breakdown).

/// One GEMM shape of a profile: every call with these transpositions and sizes.
public struct GEMMShapeRecord: Equatable, Sendable {
    public var transA: Bool, transB: Bool
    public var m: Int, n: Int, k: Int
    public var calls: Int
    public var nanoseconds: UInt64

    /// "NN", "NT", "TN" or "TT" (op(A), op(B)).
    public var operation: String { (transA ? "T" : "N") + (transB ? "T" : "N") }
    /// Floating-point operations of all its calls (2 m n k each).
    public var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(calls) }
    public var seconds: Double { Double(nanoseconds) * 1e-9 }
    public var gflops: Double { nanoseconds > 0 ? flops / Double(nanoseconds) : 0 }
    /// How `sgemm` splits it over threads: by "rows", "columns" or the reduction ("k").
    public var split: String { splitsReduction(m: m, n: n, k: k) ? "k" : (m >= n ? "rows" : "columns") }
    /// Which code ran it: "mancs" (the own AVX-512 kernel) or "openblas", as decided for the
    /// whole call (a column or reduction piece may be narrower than the call).
    public var kernel: String { GEMMKernel.runs(transA: transA, n: n, k: k) ? "mancs" : "openblas" }
}

/// Collects `GEMMShapeRecord`s between `start()` and `stop()`; off (one relaxed load per
/// GEMM) otherwise. Thread-safe: any thread may enter `sgemm` while it is on.
public enum GEMMShapeProfile {
    private struct Key: Hashable { var transA: Bool, transB: Bool, m: Int, n: Int, k: Int }
    private static let on = Atomic<Bool>(false)
    private static let table = Mutex<[Key: (calls: Int, nanoseconds: UInt64)]>([:])

    /// Forgets what was recorded and starts recording.
    public static func start() {
        table.withLock { $0.removeAll() }
        on.store(true, ordering: .releasing)
    }

    /// Stops recording; the shapes, the most time first (ties: by shape, so the order is stable).
    @discardableResult
    public static func stop() -> [GEMMShapeRecord] {
        on.store(false, ordering: .releasing)
        let records = table.withLock { t in
            t.map { GEMMShapeRecord(transA: $0.key.transA, transB: $0.key.transB, m: $0.key.m, n: $0.key.n, k: $0.key.k,
                                    calls: $0.value.calls, nanoseconds: $0.value.nanoseconds) }
        }
        return records.sorted {
            ($0.nanoseconds, $1.operation, $1.m, $1.n, $1.k) > ($1.nanoseconds, $0.operation, $0.m, $0.n, $0.k)
        }
    }

    @inline(__always)
    static var isOn: Bool { on.load(ordering: .relaxed) }

    static func record(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, nanoseconds: UInt64) {
        let key = Key(transA: transA, transB: transB, m: m, n: n, k: k)
        table.withLock { t in
            let old = t[key] ?? (0, 0)
            t[key] = (old.calls + 1, old.nanoseconds &+ nanoseconds)
        }
    }
}
