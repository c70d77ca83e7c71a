import Foundation
import Kernels

// Adam and global gradient clipping (docs/method.md §3), with PyTorch's semantics
// (torch.optim.Adam single-tensor path, torch.nn.utils.clip_grad_norm_).

// MARK: - Adam

/// Adam (PyTorch semantics: bias-corrected, eps added to the corrected sqrt(v)),
/// over one flat parameter buffer. Moments live in flat buffers of the same size.
public final class Adam: @unchecked Sendable {
    public var lr: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    /// L2 penalty added to the gradient (torch Adam's weight_decay, not AdamW).
    public var weightDecay: Float
    /// Number of steps taken so far.
    public var step: Int = 0
    public let m: UnsafeMutableBufferPointer<Float>
    public let v: UnsafeMutableBufferPointer<Float>

    public init(count: Int, lr: Float = 3e-4, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8,
                weightDecay: Float = 0) {
        precondition(count >= 0, "Adam: negative parameter count \(count)")
        self.lr = lr; self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
        m = .allocate(capacity: count)
        m.initialize(repeating: 0)
        v = .allocate(capacity: count)
        v.initialize(repeating: 0)
    }

    deinit { m.deallocate(); v.deallocate() }

    /// One step: params -= lr * mhat / (sqrt(vhat) + eps).
    ///
    /// As torch: m = lerp(m, g, 1-beta1), v = beta2 v + (1-beta2) g^2,
    /// denom = sqrt(v) / sqrt(1-beta2^t) + eps, p -= lr/(1-beta1^t) * m/denom;
    /// the scalars are computed in Double from the hyperparameters' decimal
    /// values (as Python would hold them), the elementwise work in Float.
    public func update(parameters: UnsafeMutableBufferPointer<Float>, gradients: UnsafeBufferPointer<Float>) {
        precondition(parameters.count == m.count && gradients.count == m.count,
                     "Adam.update: \(parameters.count) parameters and \(gradients.count) gradients for an optimiser of \(m.count)")
        step += 1
        let b1 = decimalDouble(beta1), b2 = decimalDouble(beta2)
        let t = Double(step)
        let biasCorrection1 = 1 - pow(b1, t)
        let biasCorrection2Sqrt = (1 - pow(b2, t)).squareRoot()
        let stepSize = Float(decimalDouble(lr) / biasCorrection1)
        let oneMinusBeta1 = Float(1 - b1), oneMinusBeta2 = Float(1 - b2)
        let beta2 = self.beta2, eps = self.eps, decay = weightDecay
        let bc2 = Float(biasCorrection2Sqrt)
        let count = m.count
        guard count > 0, let p = parameters.baseAddress, let g = gradients.baseAddress,
              let m = m.baseAddress, let v = v.baseAddress else { return }
        // Every element on its own: split over the compute threads, eight elements per
        // vector operation (the compiler left the plain loop scalar: the four buffers
        // might alias), the last ones in a shorter vector with the same operations.
        parallelRanges(count, workPerItem: 8) { range in
            var i = range.lowerBound
            while i < range.upperBound {
                let n = min(8, range.upperBound &- i)
                var grad: SIMD8<Float> = loadVector(g + i, count: n)
                if decay != 0 { grad += decay * loadVector(p + i, count: n) }
                var mi: SIMD8<Float> = loadVector(m + i, count: n), vi: SIMD8<Float> = loadVector(v + i, count: n)
                mi += oneMinusBeta1 * (grad - mi)
                vi = vi * beta2 + oneMinusBeta2 * grad * grad
                let denom = vi.squareRoot() / bc2 + eps
                storeVector(mi, m + i, count: n)
                storeVector(vi, v + i, count: n)
                storeVector(loadVector(p + i, count: n) + -stepSize * (mi / denom), p + i, count: n)
                i &+= n
            }
        }
    }
}

/// The Double a Python literal with this Float's shortest decimal spelling
/// would hold (Float(0.9) -> 0.9, not 0.89999997615814).
private func decimalDouble(_ x: Float) -> Double { Double(x.description) ?? Double(x) }

// MARK: - Clipping

/// Global L2 clipping with torch `clip_grad_norm_` semantics: returns the norm
/// before clipping and scales by maxNorm / (norm + 1e-6) when that is below 1.
@discardableResult
public func clipGradientNorm(_ gradients: UnsafeMutableBufferPointer<Float>, maxNorm: Float) -> Float {
    let norm = l2Norm(UnsafeBufferPointer(gradients))
    let scale = Double(maxNorm) / (norm + 1e-6)
    if scale < 1 {
        let s = Float(scale)
        if let base = gradients.baseAddress { Kernels.scale(count: gradients.count, base, by: s) }
    }
    return Float(norm)
}

/// The L2 norm of a flat buffer, accumulated in Double (Kernels' `sumOfSquares`).
public func l2Norm(_ x: UnsafeBufferPointer<Float>) -> Double {
    guard let p = x.baseAddress else { return 0 }
    return sumOfSquares(count: x.count, p).squareRoot()
}
