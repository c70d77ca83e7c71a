import Foundation

// Curriculum sampling of triplet negatives (docs/method.md §2, reference
// `curriculum_weights`): negatives of an anchor are sorted by distance
// ascending (index 0 = hardest); index j is drawn with probability
// proportional to exp(-(j - mu)^2 / (2 sigma^2)).

// MARK: - Schedule

/// Curriculum parameters: mu = max(Nn - Nn/t0 * t, 0), sigma = a * b^((t-t0)/(t1-t0)).
public struct CurriculumSchedule: Sendable, Equatable, Codable {
    public var t0: Double = 30
    public var t1: Double = 60
    public var a: Double = 15
    public var b: Double = 0.001
    public init() {}
    public init(t0: Double, t1: Double, a: Double, b: Double) { self.t0 = t0; self.t1 = t1; self.a = a; self.b = b }

    /// mu and sigma at a 0-based `epoch` for an anchor with `negatives` negatives.
    public func muSigma(negatives: Int, epoch: Int) -> (mu: Double, sigma: Double) {
        let nn = Double(negatives), t = Double(epoch)
        return (max(nn - nn / t0 * t, 0), a * pow(b, (t - t0) / (t1 - t0)))
    }
}

// MARK: - Probabilities

/// Normalised curriculum probabilities over `negatives` sorted negatives
/// (index 0 = hardest) at `epoch`. Falls back to all mass on the index nearest
/// mu when every weight underflows.
public func curriculumProbabilities(negatives: Int, epoch: Int, schedule: CurriculumSchedule) -> [Double] {
    precondition(negatives > 0, "curriculumProbabilities: needs at least one negative, got \(negatives)")
    let (mu, sigma) = schedule.muSigma(negatives: negatives, epoch: epoch)
    let twoSigma2 = 2.0 * sigma * sigma
    var weights = (0..<negatives).map { j -> Double in
        let d = Double(j) - mu
        return exp(-(d * d) / twoSigma2)
    }
    var total = weights.reduce(0, +)
    if total == 0 {
        // Far past t1 every weight underflows: all mass on the index nearest mu
        // (Python's round: half to even).
        weights = [Double](repeating: 0, count: negatives)
        weights[min(Int(mu.rounded(.toNearestOrEven)), negatives - 1)] = 1
        total = 1
    }
    return weights.map { $0 / total }
}

// MARK: - Drawing

/// A uniform Double in [0, 1) from the top 53 bits of one draw.
@inlinable
func uniformUnit<R: RandomNumberGenerator>(_ rng: inout R) -> Double {
    Double(rng.next() >> 11) * 0x1p-53
}

/// Draws an index with the given (normalised) probabilities: the first index
/// whose cumulative probability exceeds a uniform draw. Rounding in the
/// cumulative sum never selects a zero-probability tail entry.
public func drawIndex<R: RandomNumberGenerator>(probabilities: [Double], rng: inout R) -> Int {
    precondition(!probabilities.isEmpty, "drawIndex: empty probability list")
    let u = uniformUnit(&rng)
    var cumulative = 0.0
    var lastNonZero = 0
    for (j, p) in probabilities.enumerated() where p > 0 {
        cumulative += p
        lastNonZero = j
        if u < cumulative { return j }
    }
    return lastNonZero
}
