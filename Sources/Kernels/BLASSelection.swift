import CBLAS
import Foundation

/// Which BLAS kernels this process runs, who chose them, and whether they
/// passed the self-check (set by `BLASKernelSelection.configureAtStartup`).
public struct BLASKernelReport: Sendable {
    /// The core OpenBLAS runs (`openblas_get_corename()`).
    public var core: String
    public var source: BLASCoreSource
    /// OpenBLAS's own choice, when mancs replaced it or a replacement was rejected.
    public var openblasChoice: String?
    /// Something the user should know (a fallback, a better core the environment rules out).
    public var note: String?
    public var cpu: CPUFeatures

    /// One line for logs: the kernels, who chose them, and why.
    public var summary: String {
        var s = "OpenBLAS \(core) kernels"
        switch source {
        case .openblas: s += " (OpenBLAS's choice for \(cpu))"
        case .environment: s += " (OPENBLAS_CORETYPE from the environment, on \(cpu))"
        case .mancs: s += " (selected by mancs: OpenBLAS had fallen back to \(openblasChoice ?? "generic kernels") on \(cpu))"
        }
        if let note { s += "; " + note }
        return s
    }
}

/// Applies `chooseBLASCore` at process start. OpenBLAS reads OPENBLAS_CORETYPE
/// once, when it loads, so a different core needs a fresh process image: the
/// executable re-executes itself (same pid, arguments and environment, before
/// MPI_Init) with the variable set. Every process then checks the kernels it got
/// against a plain reference; a core mancs selected that fails is dropped for
/// OpenBLAS's own choice.
public enum BLASKernelSelection {
    /// Set on the re-executed process: "selected|CORE|OPENBLAS_CHOICE" or
    /// "rejected|CORE|OPENBLAS_CHOICE|WHY" (the selection failed the self-check).
    static let markerVariable = "MANCS_BLAS_SELECTION"
    /// Test hook: decide as if OpenBLAS had chosen this core (simulates the fallback).
    public static let simulateVariable = "MANCS_SIMULATE_BLAS_CORE"
    /// Test hook: the self-check fails while this core is loaded (simulates bad kernels).
    public static let simulateBadCoreVariable = "MANCS_SIMULATE_BAD_BLAS_CORE"

    nonisolated(unsafe) private static var current: BLASKernelReport?

    /// The kernels of this process (configuring them first if nobody has).
    public static var report: BLASKernelReport {
        if let current { return current }
        let r = settle(allowRestart: false)
        current = r
        GEMMKernel.checkAtStartup()
        return r
    }

    /// Call first thing in `main`, before MPI_Init and before any thread starts: may
    /// replace the process image (execv) to load better kernels; exits with status 1
    /// when the kernels compute wrong results and there is nothing to fall back to.
    public static func configureAtStartup() {
        if current == nil {
            current = settle(allowRestart: true)
            GEMMKernel.checkAtStartup()
        }
    }

    private static func settle(allowRestart: Bool) -> BLASKernelReport {
        let cpu = CPUFeatures.detect()
        let loaded = blasCoreName
        let env = ProcessInfo.processInfo.environment
        let marker = env[markerVariable].map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        unsetenv(markerVariable)  // children of this process decide for themselves
        unsetenv(simulateVariable)

        let badCore = env[simulateBadCoreVariable]?.lowercased()
        func selfCheck() -> String? {
            if let badCore, badCore == loaded.lowercased() { return "simulated failure (\(simulateBadCoreVariable))" }
            return sgemmSelfCheck(using: openblasSgemm)
        }

        if let m = marker, m.count >= 3, m[0] == "selected" {
            let requested = m[1], original = m[2]
            if let failure = selfCheck() {
                // Back to OpenBLAS's own choice, in a fresh image.
                if allowRestart {
                    unsetenv("OPENBLAS_CORETYPE")
                    restart(marker: "rejected|\(requested)|\(original)|\(failure)")
                }
                fatal("the \(loaded) kernels mancs selected compute wrong results (\(failure)) and the process "
                      + "could not restart with OpenBLAS's own choice")
            }
            let note = loaded.lowercased() == requested.lowercased() ? nil
                : "asked OpenBLAS for \(requested), it loaded \(loaded)"
            return BLASKernelReport(core: loaded, source: .mancs, openblasChoice: original, note: note, cpu: cpu)
        }
        var report: BLASKernelReport
        if let m = marker, m.count >= 4, m[0] == "rejected" {
            report = BLASKernelReport(core: loaded, source: .openblas, openblasChoice: loaded,
                                      note: "mancs selected \(m[1]), whose kernels failed the self-check (\(m[3])): "
                                          + "running OpenBLAS's own choice", cpu: cpu)
        } else {
            let user = env["OPENBLAS_CORETYPE"]
            let seen = env[simulateVariable].flatMap { $0.isEmpty ? nil : $0 } ?? loaded
            switch chooseBLASCore(current: seen, cpu: cpu, userCoreType: user, available: BLASKernelSelection.buildHas) {
            case .select(let core, _):
                if allowRestart {
                    setenv("OPENBLAS_CORETYPE", core, 1)
                    restart(marker: "selected|\(core)|\(seen)")
                    unsetenv("OPENBLAS_CORETYPE")
                }
                report = BLASKernelReport(core: loaded, source: .openblas, openblasChoice: seen,
                                          note: "OpenBLAS fell back to \(seen); mancs could not restart with \(core)",
                                          cpu: cpu)
            case .keep(let source, let note):
                report = BLASKernelReport(core: loaded, source: source, openblasChoice: nil, note: note, cpu: cpu)
            }
        }
        if let failure = selfCheck() {
            let how = report.source == .environment
                ? "the OPENBLAS_CORETYPE in the environment selects them; unset it or choose another core"
                : "set OPENBLAS_CORETYPE to a core this CPU runs correctly (e.g. Haswell)"
            fatal("OpenBLAS's \(loaded) kernels compute wrong results on this CPU (\(failure)): \(how)")
        }
        return report
    }

    /// Whether this OpenBLAS build has a core (its DYNAMIC_ARCH table `gotoblas_NAME`).
    static func buildHas(_ core: String) -> Bool {
        guard let program = dlopen(nil, RTLD_LAZY) else { return false }
        defer { dlclose(program) }
        return dlsym(program, "gotoblas_\(core.uppercased())") != nil
    }

    private static func restart(marker: String) {
        setenv(markerVariable, marker, 1)
        fflush(nil)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        unsetenv(markerVariable)  // execv failed: carry on in this image
    }

    private static func fatal(_ message: String) -> Never {
        FileHandle.standardError.write(Data("mancs: error: \(message)\n".utf8))
        exit(1)
    }

    // MARK: Self-check

    /// Checks a single-threaded sgemm (OpenBLAS's, or mancs's own kernel on the
    /// calls it `handles`) against a double-precision reference on small random
    /// matrices: every transposition case, padded leading dimensions, beta 0 and 1,
    /// and the shape classes the kernels produce (tiny, tall, wide, long reduction,
    /// sizes off the kernels' block multiples, the own kernel's 16-column multiples
    /// and its row and reduction blocks). Nil when all agree within the float32
    /// rounding bound, else the first mismatch.
    static func sgemmSelfCheck(
        using gemm: SingleThreadSgemm,
        handles: (_ transA: Bool, _ n: Int, _ k: Int) -> Bool = { _, _, _ in true }
    ) -> String? {
        let shapes: [(m: Int, n: Int, k: Int)] = [
            (1, 1, 1), (7, 5, 3), (37, 29, 61), (130, 67, 33), (16, 300, 17), (24, 20, 700), (64, 64, 64), (97, 113, 257),
            (1, 16, 1), (5, 48, 3), (103, 80, 300), (13, 1088, 9), (200, 64, 513),
        ]
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int32(truncatingIfNeeded: state >> 32)) / Float(Int32.max)
        }
        for (m, n, k) in shapes {
            for transA in [false, true] where handles(transA, n, k) {
                for transB in [false, true] {
                    for beta: Float in [0, 1] {
                        let aRows = transA ? k : m, aCols = transA ? m : k
                        let bRows = transB ? n : k, bCols = transB ? k : n
                        let lda = aCols + 3, ldb = bCols + 1, ldc = n + 2
                        let a = (0..<(aRows * lda)).map { _ in next() }
                        let b = (0..<(bRows * ldb)).map { _ in next() }
                        var c = (0..<(m * ldc)).map { _ in next() }
                        let c0 = c
                        let alpha: Float = 0.75
                        a.withUnsafeBufferPointer { a in
                            b.withUnsafeBufferPointer { b in
                                c.withUnsafeMutableBufferPointer { c in
                                    gemm(transA, transB, m, n, k, alpha, a.baseAddress!, lda, b.baseAddress!, ldb,
                                         beta, c.baseAddress!, ldc)
                                }
                            }
                        }
                        for i in 0..<m {
                            for j in 0..<n {
                                var sum = 0.0, magnitude = 0.0
                                for p in 0..<k {
                                    let x = Double(transA ? a[p * lda + i] : a[i * lda + p])
                                    let y = Double(transB ? b[j * ldb + p] : b[p * ldb + j])
                                    sum += x * y
                                    magnitude += abs(x * y)
                                }
                                let expected = Double(alpha) * sum + Double(beta) * Double(c0[i * ldc + j])
                                // Float32 rounding bound of any summation order, with room to spare.
                                let bound = 4 * Double(k + 2) * 0x1p-24 * (Double(alpha) * magnitude + abs(Double(c0[i * ldc + j])))
                                    + 1e-30
                                let got = Double(c[i * ldc + j])
                                if !(abs(got - expected) <= bound) {
                                    return "sgemm \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k) beta \(Int(beta)): "
                                        + "C[\(i),\(j)] = \(got), expected \(expected)"
                                }
                            }
                        }
                        // Padding between rows must be untouched.
                        for i in 0..<m { for j in n..<ldc where c[i * ldc + j] != c0[i * ldc + j] {
                            return "sgemm \(transA ? "T" : "N")\(transB ? "T" : "N") \(m)x\(n)x\(k) wrote outside C"
                        } }
                    }
                }
            }
        }
        return nil
    }
}

/// GFLOP/s of a square n^3 OpenBLAS sgemm with the kernels' current threads (best
/// of three after a warm-up): the rate the network's GEMMs are measured against.
/// Always OpenBLAS's, also where mancs's own kernel runs the network's GEMMs, so
/// the reference does not move with the kernel it judges.
public func measureSgemmGFLOPs(size n: Int, repeats: Int = 3) -> Double {
    let a = [Float](repeating: 0.5, count: n * n), b = [Float](repeating: 0.25, count: n * n)
    var c = [Float](repeating: 0, count: n * n)
    return a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                measureSgemmGFLOPs(size: n, repeats: repeats, a: a.baseAddress!, b: b.baseAddress!, c: c.baseAddress!)
            }
        }
    }
}

/// `measureSgemmGFLOPs` on the caller's matrices (n x n floats each; `a` and `b` may
/// be the same), for a measurement that must not raise the process's peak memory.
public func measureSgemmGFLOPs(size n: Int, repeats: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                               c: UnsafeMutablePointer<Float>) -> Double {
    var best = Double.infinity
    for rep in 0...max(1, repeats) {
        let t0 = monotonicNanoseconds()
        sgemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n,
              b: b, ldb: n, beta: 0, c: c, ldc: n, using: openblasSgemm)
        let s = Double(monotonicNanoseconds() - t0) * 1e-9
        if rep > 0 { best = min(best, s) }
    }
    return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
}

/// Nanoseconds of CLOCK_MONOTONIC.
@inline(__always)
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
