import TestSupport

/// sum(values * weights) accumulated in Double: the scalar every gradient check differentiates.
func weightedSum(_ values: [Float], _ weights: [Float]) -> Double {
    precondition(values.count == weights.count, "weightedSum: \(values.count) values, \(weights.count) weights")
    var total = 0.0
    for i in values.indices { total += Double(values[i]) * Double(weights[i]) }
    return total
}

/// Random values with |x| >= margin, so ReLU/PReLU kinks sit further than the step away.
func awayFromZero(_ n: Int, margin: Float = 0.1, rng: inout SplitMix64) -> [Float] {
    (0..<n).map { _ in
        let u = rng.nextSigned()
        return u >= 0 ? margin + u : -margin + u
    }
}

/// Distinct values on a grid of spacing `gap` in random order, so no max-pool tie is within a step.
func distinctShuffled(_ n: Int, gap: Float = 0.05, rng: inout SplitMix64) -> [Float] {
    var values = (0..<n).map { Float($0) * gap - Float(n) * gap / 2 }
    values.shuffle(using: &rng)
    return values
}

/// Worst-error bound used by the finite-difference checks.
let gradientTolerance = 1e-3

/// Finite-difference step for functions linear in the perturbed argument (conv, linear,
/// pooling by averaging, the attention product): a large step only shrinks float32 rounding.
let linearStep: Float = 0.1
