import Testing
import MancsTraining
import TestSupport

// Finite-difference checks of every loss gradient (TestSupport.gradientCheck),
// including `gradScale`, which the model uses to pass lambda.

// MARK: - Helpers

/// Runs `loss` once for its gradient, then checks it against central differences.
private func checkGradient(
    input: [Float], gradScale: Float = 1, h: Float = 1e-3, tolerance: Double = 5e-3,
    _ loss: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Float) -> Float
) -> Double {
    var x = input
    var grad = [Float](repeating: .nan, count: x.count)
    _ = x.withUnsafeBufferPointer { xp in
        grad.withUnsafeMutableBufferPointer { loss(xp.baseAddress!, $0.baseAddress!, gradScale) }
    }
    #expect(grad.allSatisfy { $0.isFinite }, "gradient has non-finite entries")
    let result = gradientCheck(input: &x, analytic: grad, h: h) { probe in
        var scratch = [Float](repeating: 0, count: probe.count)
        let value = probe.withUnsafeBufferPointer { pp in
            scratch.withUnsafeMutableBufferPointer { loss(pp.baseAddress!, $0.baseAddress!, 1) }
        }
        return Double(gradScale) * Double(value)
    }
    #expect(result.worst < tolerance,
            "worst relative error \(result.worst) at \(result.index): numeric \(result.numeric), analytic \(result.analytic)")
    return result.worst
}

// MARK: - Tests

@Suite struct LossGradientTests {
    let labels = [3, 3, 3, 7, 7, 7, 9, 9]
    let dim = 5

    @Test(arguments: [Float(1), 0.7])
    func tripletGradientWithFixedNegatives(gradScale: Float) {
        var rng = SplitMix64(seed: 11)
        let features = rng.array(labels.count * dim, scale: 1)
        // Draw the negatives once at random and keep them fixed, so
        // the finite difference sees one smooth function.
        var scratch = [Float](repeating: 0, count: features.count)
        let picked = tripletLoss(features: features, count: labels.count, dim: dim, labels: labels, margin: 0.5,
                                 sampling: .random, rng: &rng, gradFeatures: &scratch, gradScale: 1).negatives
        var active = 0
        _ = checkGradient(input: features, gradScale: gradScale) { x, g, scale in
            var r = SplitMix64(seed: 0)
            let result = tripletLoss(features: x, count: labels.count, dim: dim, labels: labels, margin: 0.5,
                                     sampling: .fixed(picked), rng: &r, gradFeatures: g, gradScale: scale)
            active = result.pairs.count
            return result.loss
        }
        #expect(active == 3 * 2 + 3 * 2 + 2 * 1)
    }

    @Test func tripletGradientWithHardestNegatives() {
        var rng = SplitMix64(seed: 12)
        let features = rng.array(labels.count * dim, scale: 1)
        var value: Float = 0
        _ = checkGradient(input: features, gradScale: 1.3) { x, g, scale in
            var r = SplitMix64(seed: 0)
            value = tripletLoss(features: x, count: labels.count, dim: dim, labels: labels, margin: 0.5,
                                sampling: .hardest, rng: &r, gradFeatures: g, gradScale: scale).loss
            return value
        }
        #expect(value > 0, "the check is only meaningful with active hinges")
    }

    @Test func tripletGradientIsFiniteForIdenticalFeatures() {
        // Anchor and positive coincide: D is clamped at sqrt(1e-12) and its
        // gradient is 0 (as torch's clamp), never NaN.
        let features: [Float] = [1, 2, 1, 2, 5, 5]
        var grad = [Float](repeating: .nan, count: 6)
        var rng = SplitMix64(seed: 1)
        let result = tripletLoss(features: features, count: 3, dim: 2, labels: [0, 0, 1], margin: 0.5,
                                 sampling: .hardest, rng: &rng, gradFeatures: &grad, gradScale: 1)
        #expect(result.negatives == [2, 2])
        #expect(abs(result.loss - (0.5 + 1e-6 - 5)) < 1e-6 || result.loss == 0)
        #expect(grad.allSatisfy { $0 == 0 }, "inactive hinges give zero gradient: \(grad)")
        // Pull the negative close so the hinge is active: only the negative term moves.
        let close: [Float] = [1, 2, 1, 2, 1.1, 2]
        let active = tripletLoss(features: close, count: 3, dim: 2, labels: [0, 0, 1], margin: 0.5,
                                 sampling: .hardest, rng: &rng, gradFeatures: &grad, gradScale: 1)
        #expect(abs(active.loss - (0.5 + 1e-6 - 0.1)) < 1e-5)
        #expect(grad.allSatisfy { $0.isFinite })
        // d/df_n of -D(a,n) averaged over 2 pairs: -(f_n - f_a)/D per pair.
        #expect(abs(grad[4] - -1) < 1e-4 && abs(grad[5]) < 1e-4, "\(grad)")
    }

    @Test(arguments: [Float(2), 0, 0.5])
    func focalGradient(gamma: Float) {
        let n = 6, classes = 5
        var rng = SplitMix64(seed: 21)
        let logits = rng.array(n * classes, scale: 3)
        let labels = [0, 4, 2, 2, 1, 3]
        // Smooth in the logits: a larger step keeps Float rounding out of the difference.
        _ = checkGradient(input: logits, gradScale: 0.9, h: 1e-2) { x, g, scale in
            focalLoss(logits: x, count: n, classes: classes, labels: labels, gamma: gamma,
                      gradLogits: g, gradScale: scale)
        }
    }

    @Test func attentionGradient() {
        let n = 4, classes = 7
        var rng = SplitMix64(seed: 31)
        let logits = rng.array(n * classes, scale: 4)
        let labels = [6, 0, 3, 3]
        _ = checkGradient(input: logits, gradScale: 0.2, h: 1e-2) { x, g, scale in
            attentionLoss(logits: x, count: n, classes: classes, labels: labels, gradLogits: g, gradScale: scale)
        }
    }

    @Test func lossesStayFiniteForExtremeLogits() {
        let logits: [Float] = [300, -300, 0, -300, 300, 0]
        var grad = [Float](repeating: .nan, count: 6)
        let focal = focalLoss(logits: logits, count: 2, classes: 3, labels: [0, 0], gamma: 2,
                              gradLogits: &grad, gradScale: 1)
        // Row 0 is certain and right (loss 0), row 1 certain and wrong (loss 600 / 2 rows).
        #expect(abs(focal - 300) < 1e-3)
        #expect(grad.allSatisfy { $0.isFinite })
        let att = attentionLoss(logits: logits, count: 2, classes: 3, labels: [0, 0],
                                gradLogits: &grad, gradScale: 1)
        // Row 0: 0 + 0 + log 2; row 1: 300 + 300 + log 2 over 6 entries.
        #expect(abs(att - Float((600 + 2 * 0.6931471805599453) / 6)) < 1e-3)
        #expect(grad.allSatisfy { $0.isFinite })
    }
}
