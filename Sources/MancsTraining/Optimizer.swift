/// Adam (PyTorch semantics: bias-corrected, eps added to the corrected sqrt(v)),
/// over one flat parameter buffer. Moments live in flat buffers of the same size.
public final class Adam: @unchecked Sendable {
    public var lr: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// Number of steps taken so far.
    public var step: Int = 0
    public let m: UnsafeMutableBufferPointer<Float>
    public let v: UnsafeMutableBufferPointer<Float>

    public init(count: Int, lr: Float = 3e-4, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0) {
        fatalError("TODO(losses)")
    }

    deinit { m.deallocate(); v.deallocate() }

    /// One step: params -= lr * mhat / (sqrt(vhat) + eps).
    public func update(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeBufferPointer<Float>) {
        fatalError("TODO(losses)")
    }
}

/// Global L2 clipping with torch `clip_grad_norm_` semantics: returns the norm
/// before clipping and scales by maxNorm / (norm + 1e-6) when that is below 1.
@discardableResult
public func clipGradientNorm(_ gradients: UnsafeMutableBufferPointer<Float>, maxNorm: Float) -> Float {
    fatalError("TODO(losses)")
}
