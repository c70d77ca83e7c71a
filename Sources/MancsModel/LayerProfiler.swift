#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Kernels

/// What a timed stretch of the network's forward/backward was spent on.
public enum LayerKind: Int, CaseIterable, Sendable {
    /// 1x1 stride-1 convolutions: one plain GEMM each (no im2col).
    case conv1x1
    /// Every other convolution: im2col (col2im in backward) plus GEMMs.
    case convKxK
    /// Fully connected layers of the heads.
    case linear
    case batchNorm
    /// ReLU, PReLU, sigmoid.
    case activation
    /// Max-pool and global average pool.
    case pooling
    /// Residual adds, attention combine, concat/split, copies.
    case elementwise

    public var name: String {
        switch self {
        case .conv1x1: "conv_1x1_gemm"
        case .convKxK: "conv_kxk_im2col_gemm"
        case .linear: "linear_gemm"
        case .batchNorm: "batchnorm"
        case .activation: "activations"
        case .pooling: "pooling"
        case .elementwise: "elementwise"
        }
    }
}

/// Opt-in timing of the network's kernel calls, accumulated per `LayerKind`
/// (set `MancsNetwork.profiler`; nil, the default, costs one nil check per
/// kernel call). Not thread-safe: one network, one thread.
public final class LayerProfiler: @unchecked Sendable {
    /// Accumulated nanoseconds per kind, indexed by `LayerKind.rawValue`.
    public private(set) var nanoseconds: [UInt64]
    /// Whole forward / backward passes (the kinds plus bookkeeping between them).
    public private(set) var forwardNanoseconds: UInt64 = 0
    public private(set) var backwardNanoseconds: UInt64 = 0
    /// Calls per kind.
    public private(set) var calls: [Int]

    public init() {
        nanoseconds = [UInt64](repeating: 0, count: LayerKind.allCases.count)
        calls = [Int](repeating: 0, count: LayerKind.allCases.count)
    }

    public func reset() {
        for i in nanoseconds.indices { nanoseconds[i] = 0; calls[i] = 0 }
        forwardNanoseconds = 0; backwardNanoseconds = 0
    }

    public func seconds(_ kind: LayerKind) -> Double { Double(nanoseconds[kind.rawValue]) * 1e-9 }

    @inline(__always)
    func add(_ kind: LayerKind, _ ns: UInt64) {
        nanoseconds[kind.rawValue] &+= ns
        calls[kind.rawValue] &+= 1
    }

    func addForward(_ ns: UInt64) { forwardNanoseconds &+= ns }
    func addBackward(_ ns: UInt64) { backwardNanoseconds &+= ns }
}

extension StoreBases {
    /// Runs `body`, charging its time to `kind` when profiling.
    @inline(__always)
    func timed<T>(_ kind: LayerKind, _ body: () -> T) -> T {
        guard let p = profiler else { return body() }
        let start = monotonicNanoseconds()
        let result = body()
        p.add(kind, monotonicNanoseconds() &- start)
        return result
    }
}
