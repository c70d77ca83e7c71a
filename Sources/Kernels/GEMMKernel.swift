import CGEMMKernels
import Foundation

// Which code runs a single-threaded GEMM call: mancs's own AVX-512 kernel
// (Sources/CGEMMKernels) or OpenBLAS. On the network's thin GEMMs OpenBLAS spends
// much of its time packing the big operand; the own kernel reads it in place. It
// takes the thin GEMMs with A not transposed (`handles`: forward and input
// gradients of stages 1-2), where it measured 1.2-2x OpenBLAS's SkylakeX kernels
// per thread with two threads running (docs/performance.md, "Own GEMM kernel");
// the weight gradients (Aᵀ·B) and the wider shapes stay with OpenBLAS, which was
// as fast there.

/// The GEMM kernel choice of this process.
public enum GEMMKernel {
    /// `MANCS_GEMM`: `auto` (the default, also unset or empty: the own kernel where the
    /// CPU has AVX-512), `mancs` (the same, said when impossible) or `openblas`
    /// (every GEMM by OpenBLAS). Any other value stops the process at start-up.
    public static let variable = "MANCS_GEMM"
    public enum Setting: String, Sendable, CaseIterable { case auto, mancs, openblas }
    /// Test hook: the own kernel's self-check fails (simulates a wrong kernel).
    public static let simulateBadVariable = "MANCS_SIMULATE_BAD_GEMM_KERNEL"

    /// What `choose` decided, and why when the own kernel is off.
    public struct Decision: Equatable, Sendable {
        public var ownKernel: Bool
        public var note: String?
    }

    /// Pure decision from what the CPU runs and the user's setting (tested on a table).
    public static func choose(cpu: CPUFeatures, built: Bool, setting: Setting) -> Decision {
        let usable = built && cpu.level == .avx512
        switch setting {
        case .openblas: return Decision(ownKernel: false, note: "\(variable)=openblas: OpenBLAS runs every GEMM")
        case .auto: return Decision(ownKernel: usable, note: nil)
        case .mancs:
            return usable ? Decision(ownKernel: true, note: nil)
                : Decision(ownKernel: false, note: "\(variable)=mancs, but this CPU has no AVX-512: OpenBLAS runs every GEMM")
        }
    }

    /// `MANCS_GEMM` (unset or empty: `auto`); throws on any other value.
    public static func settingFromEnvironment() throws -> Setting {
        guard let raw = ProcessInfo.processInfo.environment[variable], !raw.isEmpty else { return .auto }
        guard let s = Setting(rawValue: raw.lowercased()) else { throw GEMMKernelSettingError(value: raw) }
        return s
    }

    /// Read once; `checkAtStartup` (every executable, first thing) turns a bad value
    /// into a one-line error before anything reads this.
    nonisolated(unsafe) static var decision: Decision = {
        do {
            return choose(cpu: .detect(), built: mancs_gemm_avx512_built() != 0, setting: try settingFromEnvironment())
        } catch { fatalError("\(error)") }
    }()

    /// Whether the own kernel runs the calls it handles (set once at start-up).
    public static var ownKernelEnabled: Bool { decision.ownKernel }
    /// Why the own kernel is off, when the user should know.
    public static var note: String? { decision.note }

    /// Turns the own kernel off for the rest of the process (after a failed self-check).
    static func disable(because reason: String) { decision = Decision(ownKernel: false, note: reason) }

    /// Checks the setting (a bad one: one error line, exit 1), then runs
    /// `sgemmSelfCheck` on the own kernel when it is on, and turns it off on a mismatch.
    static func checkAtStartup() {
        do { _ = try settingFromEnvironment() } catch {
            FileHandle.standardError.write(Data("mancs: error: \(error)\n".utf8))
            exit(1)
        }
        guard ownKernelEnabled else { return }
        let failure = ProcessInfo.processInfo.environment[simulateBadVariable].map { _ in "simulated failure (\(simulateBadVariable))" }
            ?? BLASKernelSelection.sgemmSelfCheck(using: ownSgemm, handles: handles)
        if let failure {
            disable(because: "mancs's AVX-512 GEMM kernel failed the self-check (\(failure)): OpenBLAS runs every GEMM")
        }
    }

    /// One line for logs.
    public static var summary: String {
        var s = ownKernelEnabled ? "mancs AVX-512 kernel for thin A·B and A·Bᵀ (n or k at most \(thinLimit)), OpenBLAS for the rest" : "OpenBLAS for every GEMM"
        if let note { s += " (\(note))" }
        return s
    }

    /// The calls the own kernel takes: A not transposed, n a multiple of 16, and thin:
    /// at most `thinLimit` columns or reduction (stages 1-2 of ResNet-50, the stem, the
    /// Winograd GEMMs of those stages). On the wider stage-3/4 shapes OpenBLAS's
    /// SkylakeX kernels were as fast or faster (docs/performance.md).
    @inline(__always)
    static func handles(transA: Bool, n: Int, k: Int) -> Bool { !transA && n & 15 == 0 && min(n, k) <= thinLimit }

    static let thinLimit = 128

    /// Whether this process runs such a call with the own kernel (on, and it handles it).
    @inline(__always)
    static func runs(transA: Bool, n: Int, k: Int) -> Bool { ownKernelEnabled && handles(transA: transA, n: n, k: k) }

    static func ownSgemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        mancs_sgemm_avx512(transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }
}

/// An unknown `MANCS_GEMM` value.
public struct GEMMKernelSettingError: Error, CustomStringConvertible {
    public let value: String
    public var description: String {
        "\(GEMMKernel.variable)=\(value): expected one of \(GEMMKernel.Setting.allCases.map(\.rawValue).joined(separator: ", "))"
    }
}
