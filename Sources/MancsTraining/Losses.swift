// The three Mancs losses (SPEC section 2). Each returns its value and writes
// d(lambda * loss)/d(input) into a caller-provided gradient buffer (overwritten),
// where lambda is `gradScale`.

/// How the triplet loss picks one negative per (anchor, positive) pair.
public enum NegativeSampling: Sendable, Equatable {
    /// Curriculum sampling at a 0-based epoch (SPEC section 2).
    case curriculum(CurriculumSchedule, epoch: Int)
    /// The closest negative of the anchor (batch-hard).
    case hardest
    /// A uniformly random negative of the anchor.
    case random
    /// Given negatives, one per pair in `tripletPairs` order (fixture checks).
    case fixed([Int])
}

/// Curriculum parameters: mu = max(Nn - Nn/t0 * t, 0), sigma = a * b^((t-t0)/(t1-t0)).
public struct CurriculumSchedule: Sendable, Equatable, Codable {
    public var t0: Double = 30
    public var t1: Double = 60
    public var a: Double = 15
    public var b: Double = 0.001
    public init() {}
    public init(t0: Double, t1: Double, a: Double, b: Double) { self.t0 = t0; self.t1 = t1; self.a = a; self.b = b }
}

public struct TripletResult: Sendable {
    public var loss: Float
    /// Ordered (anchor, positive) pairs: same label, anchor != positive.
    public var pairs: [(anchor: Int, positive: Int)]
    /// The negative used for each pair.
    public var negatives: [Int]
}

/// All ordered (anchor, positive) pairs with equal labels, anchor != positive,
/// in row-major order (as the reference's `triplet_pairs`).
public func tripletPairs(labels: [Int]) -> [(anchor: Int, positive: Int)] {
    fatalError("TODO(losses)")
}

/// Normalised curriculum probabilities over `negatives` sorted negatives
/// (index 0 = hardest) at `epoch`. Falls back to all mass on the index nearest
/// mu when every weight underflows.
public func curriculumProbabilities(negatives: Int, epoch: Int, schedule: CurriculumSchedule) -> [Double] {
    fatalError("TODO(losses)")
}

/// Triplet loss with margin over features [n, dim]. Writes gradScale * dL/dfeatures
/// into gradFeatures [n, dim]. `rng` drives curriculum and random sampling.
public func tripletLoss<R: RandomNumberGenerator>(
    features: UnsafePointer<Float>, count n: Int, dim: Int, labels: [Int], margin: Float,
    sampling: NegativeSampling, rng: inout R,
    gradFeatures: UnsafeMutablePointer<Float>, gradScale: Float
) -> TripletResult {
    fatalError("TODO(losses)")
}

/// Softmax focal loss mean(-(1-p_y)^gamma log p_y) over logits [n, classes].
public func focalLoss(logits: UnsafePointer<Float>, count n: Int, classes: Int, labels: [Int], gamma: Float,
                      gradLogits: UnsafeMutablePointer<Float>, gradScale: Float) -> Float {
    fatalError("TODO(losses)")
}

/// Sigmoid cross-entropy against one-hot targets, averaged over n x classes.
public func attentionLoss(logits: UnsafePointer<Float>, count n: Int, classes: Int, labels: [Int],
                          gradLogits: UnsafeMutablePointer<Float>, gradScale: Float) -> Float {
    fatalError("TODO(losses)")
}
