import Kernels

/// One named tensor inside a flat store.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    /// Shape as in PyTorch and in files (conv weights O x I x kH x kW).
    public var shape: [Int]
    /// Offset into the store's flat buffer, in floats.
    public var offset: Int
    public var count: Int { shape.reduce(1, *) }
    /// True for 4-D conv weights, held internally as O x kH x kW x I (see Kernels/API.swift).
    public var isConvWeight: Bool { shape.count == 4 }

    public init(name: String, shape: [Int], offset: Int) {
        self.name = name; self.shape = shape; self.offset = offset
    }
}

/// All tensors of one kind (parameters, or BatchNorm running statistics) in one
/// flat allocation, with a table of named slices (llm.c style). With gradients,
/// a second allocation of the same size mirrors it: the allreduce, Adam and
/// checkpoints are then loops over one buffer.
public final class ParameterStore: @unchecked Sendable {
    public let tensors: [TensorInfo]
    public let count: Int
    public let values: UnsafeMutableBufferPointer<Float>
    /// Present for trainable parameters, nil for buffers.
    public let grads: UnsafeMutableBufferPointer<Float>?
    private let byName: [String: Int]

    /// Lays the tensors out back to back in the given order.
    public init(shapes: [(name: String, shape: [Int])], withGradients: Bool) {
        var infos: [TensorInfo] = []
        var offset = 0
        for (name, shape) in shapes {
            let info = TensorInfo(name: name, shape: shape, offset: offset)
            infos.append(info)
            offset += info.count
        }
        tensors = infos
        count = offset
        values = .allocate(capacity: max(offset, 1))
        values.initialize(repeating: 0)
        if withGradients {
            let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(offset, 1))
            g.initialize(repeating: 0)
            grads = g
        } else {
            grads = nil
        }
        var map: [String: Int] = [:]
        for (i, t) in infos.enumerated() {
            precondition(map[t.name] == nil, "duplicate tensor name \(t.name)")
            map[t.name] = i
        }
        byName = map
    }

    deinit {
        values.deallocate()
        grads?.deallocate()
    }

    public func info(_ name: String) -> TensorInfo? { byName[name].map { tensors[$0] } }

    /// Pointer to a tensor's values (internal layout).
    public func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let t = info(name) else { preconditionFailure("no tensor named \(name)") }
        return values.baseAddress! + t.offset
    }

    /// Pointer to a tensor's gradient (internal layout).
    public func gradPointer(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let t = info(name), let g = grads else { preconditionFailure("no gradient for \(name)") }
        return g.baseAddress! + t.offset
    }

    public func zeroGradients() {
        guard let g = grads, let base = g.baseAddress else { return }
        fill(count: g.count, base, with: 0)
    }

    /// A tensor's values in file layout (PyTorch's), from `values` or `grads`.
    public func export(_ t: TensorInfo, gradient: Bool = false) -> [Float] {
        let base = (gradient ? grads! : values).baseAddress! + t.offset
        var out = [Float](repeating: 0, count: t.count)
        out.withUnsafeMutableBufferPointer { dst in
            if t.isConvWeight {
                convWeightOHWIToOIHW(base, dst.baseAddress!, out: t.shape[0], in: t.shape[1], kernel: t.shape[2])
            } else {
                dst.baseAddress!.update(from: base, count: t.count)
            }
        }
        return out
    }

    /// Sets a tensor from values in file layout.
    public func load(_ t: TensorInfo, from data: [Float], gradient: Bool = false) {
        precondition(data.count == t.count, "\(t.name): \(data.count) values for shape \(t.shape)")
        let base = (gradient ? grads! : values).baseAddress! + t.offset
        data.withUnsafeBufferPointer { src in
            if t.isConvWeight {
                convWeightOIHWToOHWI(src.baseAddress!, base, out: t.shape[0], in: t.shape[1], kernel: t.shape[2])
            } else {
                base.update(from: src.baseAddress!, count: t.count)
            }
        }
    }
}
