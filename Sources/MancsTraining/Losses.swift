import Foundation

// The three Mancs losses (docs/method.md §2). Each returns its value and writes
// d(lambda * loss)/d(input) into a caller-provided gradient buffer (overwritten),
// where lambda is `gradScale`. Arithmetic is in Double (the inputs are small:
// a batch of features or logits), results are rounded to Float once.

// MARK: - Triplet loss

/// How the triplet loss picks one negative per (anchor, positive) pair.
public enum NegativeSampling: Sendable, Equatable {
    /// Curriculum sampling at a 0-based epoch (docs/method.md §2).
    case curriculum(CurriculumSchedule, epoch: Int)
    /// The closest negative of the anchor (batch-hard).
    case hardest
    /// A uniformly random negative of the anchor.
    case random
    /// Given negatives, one per pair in `tripletPairs` order (fixture checks).
    case fixed([Int])
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
    var pairs: [(anchor: Int, positive: Int)] = []
    for i in labels.indices {
        for j in labels.indices where i != j && labels[i] == labels[j] { pairs.append((i, j)) }
    }
    return pairs
}

/// The reference's clamp on squared distances: D = sqrt(max(d2, 1e-12)).
let squaredDistanceFloor = 1e-12

/// Squared Euclidean distances [n, n] in the reference's expanded form
/// |x|^2 + |y|^2 - 2 x.y, computed in Double.
public func squaredDistances(features: UnsafePointer<Float>, count n: Int, dim: Int) -> [Double] {
    let x = (0..<(n * dim)).map { Double(features[$0]) }
    var gram = [Double](repeating: 0, count: n * n)
    x.withUnsafeBufferPointer { x in
        for i in 0..<n {
            for j in i..<n {
                var dot = 0.0
                for k in 0..<dim { dot += x[i &* dim &+ k] * x[j &* dim &+ k] }
                gram[i * n + j] = dot
                gram[j * n + i] = dot
            }
        }
    }
    var d2 = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0..<n { d2[i * n + j] = gram[i * n + i] + gram[j * n + j] - 2 * gram[i * n + j] }
    }
    return d2
}

/// Triplet loss with margin over features [n, dim]. Writes gradScale * dL/dfeatures
/// into gradFeatures [n, dim]. `rng` drives curriculum and random sampling.
/// With no (anchor, positive) pair (every label distinct) the loss is 0 and so
/// is the gradient.
public func tripletLoss<R: RandomNumberGenerator>(
    features: UnsafePointer<Float>, count n: Int, dim: Int, labels: [Int], margin: Float,
    sampling: NegativeSampling, rng: inout R,
    gradFeatures: UnsafeMutablePointer<Float>, gradScale: Float
) -> TripletResult {
    precondition(labels.count == n, "tripletLoss: \(labels.count) labels for \(n) features")
    precondition(dim > 0, "tripletLoss: feature dimension must be positive, got \(dim)")
    gradFeatures.update(repeating: 0, count: n * dim)
    let pairs = tripletPairs(labels: labels)
    guard !pairs.isEmpty else { return TripletResult(loss: 0, pairs: [], negatives: []) }

    let d2 = squaredDistances(features: features, count: n, dim: dim)
    let dist = d2.map { max($0, squaredDistanceFloor).squareRoot() }
    let negatives = chooseNegatives(pairs: pairs, labels: labels, dist: dist, sampling: sampling, rng: &rng)

    // Loss terms; `weight[a*n+b]` collects d(scaled loss)/dD(a,b) / D(a,b), so
    // that D(a,b)'s gradient is weight * (f_a - f_b) on f_a and the opposite on f_b.
    let m = Double(margin)
    let c = Double(gradScale) / Double(pairs.count)
    var total = 0.0
    var weight = [Double](repeating: 0, count: n * n)
    for ((a, p), neg) in zip(pairs, negatives) {
        let hinge = m + dist[a * n + p] - dist[a * n + neg]
        guard hinge > 0 else { continue }  // relu's gradient is 0 at 0, as torch
        total += hinge
        // The clamp passes the gradient only where d2 >= floor (torch clamp_backward).
        if d2[a * n + p] >= squaredDistanceFloor { weight[a * n + p] += c / dist[a * n + p] }
        if d2[a * n + neg] >= squaredDistanceFloor { weight[a * n + neg] -= c / dist[a * n + neg] }
    }

    // g_i = sum_j S_ij (f_i - f_j) with S = W + W^T.
    var g = [Double](repeating: 0, count: dim)
    for i in 0..<n {
        var rowSum = 0.0
        for k in 0..<dim { g[k] = 0 }
        for j in 0..<n where j != i {
            let s = weight[i * n + j] + weight[j * n + i]
            guard s != 0 else { continue }
            rowSum += s
            let fj = features + j * dim
            for k in 0..<dim { g[k] -= s * Double(fj[k]) }
        }
        let fi = features + i * dim, gi = gradFeatures + i * dim
        for k in 0..<dim { gi[k] = Float(g[k] + rowSum * Double(fi[k])) }
    }
    return TripletResult(loss: Float(total / Double(pairs.count)), pairs: pairs, negatives: negatives)
}

// MARK: - Triplet loss over a batch shared by replicas

/// The replicas that each hold one shard of a batch, for a loss over the whole
/// batch (global triplet mining, SPEC section 6). The trainer implements it over MPI.
public protocol ReplicaBatchGroup: AnyObject {
    /// How many replicas share the batch.
    var replicas: Int { get }
    /// This replica's shard is the `index`-th of the batch (shards in replica order).
    var index: Int { get }
    /// Every replica's `local`, concatenated in replica order; each passes the same count.
    func allGather(_ local: [Float]) -> [Float]
}

/// The triplet loss of the whole batch the group shares, from this replica's
/// shard `features` [n, dim]: the rows and labels of every shard are gathered (in
/// one collective), every replica computes the same loss with the same negatives
/// (`rng` must be in the same state on every replica), and `gradFeatures` [n, dim]
/// receives this shard's rows of `replicas * gradScale * dL/dfeatures`. The factor
/// `replicas` undoes the gradient allreduce's average, so the averaged parameter
/// gradient is the one-process gradient of the whole batch.
public func sharedBatchTripletLoss<R: RandomNumberGenerator>(
    features: UnsafePointer<Float>, count n: Int, dim: Int, labels: [Int], group: ReplicaBatchGroup,
    margin: Float, sampling: NegativeSampling, rng: inout R,
    gradFeatures: UnsafeMutablePointer<Float>, gradScale: Float
) -> TripletResult {
    precondition(labels.count == n, "sharedBatchTripletLoss: \(labels.count) labels for \(n) features")
    // Rows of [features, label]; labels are small integers, exact in Float.
    let width = dim + 1
    var local = [Float](repeating: 0, count: n * width)
    for i in 0..<n {
        for k in 0..<dim { local[i * width + k] = features[i * dim + k] }
        local[i * width + dim] = Float(labels[i])
    }
    let gathered = group.allGather(local)
    let total = gathered.count / width
    precondition(total == n * group.replicas, "sharedBatchTripletLoss: gathered \(total) rows, expected \(n) x \(group.replicas)")
    var all = [Float](repeating: 0, count: total * dim)
    var allLabels = [Int](repeating: 0, count: total)
    for i in 0..<total {
        for k in 0..<dim { all[i * dim + k] = gathered[i * width + k] }
        allLabels[i] = Int(gathered[i * width + dim])
    }
    var allGrad = [Float](repeating: 0, count: total * dim)
    let result = all.withUnsafeBufferPointer { all in
        allGrad.withUnsafeMutableBufferPointer { allGrad in
            tripletLoss(features: all.baseAddress!, count: total, dim: dim, labels: allLabels, margin: margin,
                        sampling: sampling, rng: &rng, gradFeatures: allGrad.baseAddress!,
                        gradScale: gradScale * Float(group.replicas))
        }
    }
    let first = group.index * n * dim
    for j in 0..<(n * dim) { gradFeatures[j] = allGrad[first + j] }
    return result
}

/// One negative per pair, as `sampling` says. `dist` is [n, n].
private func chooseNegatives<R: RandomNumberGenerator>(
    pairs: [(anchor: Int, positive: Int)], labels: [Int], dist: [Double],
    sampling: NegativeSampling, rng: inout R
) -> [Int] {
    let n = labels.count
    /// Negatives of an anchor in index order.
    func negativesOf(_ a: Int) -> [Int] {
        let negs = labels.indices.filter { labels[$0] != labels[a] }
        precondition(!negs.isEmpty, "tripletLoss: anchor \(a) (label \(labels[a])) has no negative in the batch")
        return negs
    }
    switch sampling {
    case .fixed(let given):
        precondition(given.count == pairs.count,
                     "tripletLoss: \(given.count) fixed negatives for \(pairs.count) pairs")
        for ((a, _), neg) in zip(pairs, given) {
            precondition((0..<n).contains(neg) && labels[neg] != labels[a],
                         "tripletLoss: fixed negative \(neg) is not a negative of anchor \(a)")
        }
        return given
    case .hardest:
        // Smallest distance, ties to the lowest index (Python's min).
        var cache: [Int: Int] = [:]
        return pairs.map { a, _ in
            if let hit = cache[a] { return hit }
            var best = -1
            for k in negativesOf(a) where best < 0 || dist[a * n + k] < dist[a * n + best] { best = k }
            cache[a] = best
            return best
        }
    case .random:
        return pairs.map { a, _ in
            let negs = negativesOf(a)
            return negs[Int.random(in: 0..<negs.count, using: &rng)]
        }
    case .curriculum(let schedule, let epoch):
        var sortedCache: [Int: [Int]] = [:]
        var probabilityCache: [Int: [Double]] = [:]
        return pairs.map { a, _ in
            let sorted = sortedCache[a] ?? {
                // Ascending distance, stable (ties keep index order).
                let s = negativesOf(a).sorted { (dist[a * n + $0], $0) < (dist[a * n + $1], $1) }
                sortedCache[a] = s
                return s
            }()
            let probabilities = probabilityCache[sorted.count] ?? {
                let p = curriculumProbabilities(negatives: sorted.count, epoch: epoch, schedule: schedule)
                probabilityCache[sorted.count] = p
                return p
            }()
            return sorted[drawIndex(probabilities: probabilities, rng: &rng)]
        }
    }
}

// MARK: - Focal loss

/// Softmax focal loss mean(-(1-p_y)^gamma log p_y) over logits [n, classes].
public func focalLoss(logits: UnsafePointer<Float>, count n: Int, classes: Int, labels: [Int], gamma: Float,
                      gradLogits: UnsafeMutablePointer<Float>, gradScale: Float) -> Float {
    checkClassLabels(labels, count: n, classes: classes, loss: "focalLoss")
    let g = Double(gamma)
    let c = Double(gradScale) / Double(n)
    var total = 0.0
    var z = [Double](repeating: 0, count: classes)
    for i in 0..<n {
        let row = logits + i * classes, grad = gradLogits + i * classes
        for k in 0..<classes { z[k] = Double(row[k]) }
        let zMax = z.max()!
        var sumExp = 0.0
        for k in 0..<classes { sumExp += exp(z[k] - zMax) }
        let logSumExp = zMax + log(sumExp)
        let y = labels[i]
        let logP = z[y] - logSumExp              // log p_y
        let p = exp(logP)
        let q = -expm1(logP)                     // 1 - p_y, accurate near p_y = 1
        total += -pow(q, g) * logP
        // dL_i/dlogP = -(1-p)^g + g p logP (1-p)^(g-1); the second term is 0 for
        // g = 0 (as torch's pow backward) and vanishes as p -> 1.
        var dLogP = -pow(q, g)
        if g != 0 && q > 0 { dLogP += g * p * logP * pow(q, g - 1) }
        // dlogP/dz_k = [k == y] - softmax_k.
        for k in 0..<classes {
            let softmax = exp(z[k] - logSumExp)
            grad[k] = Float(c * dLogP * ((k == y ? 1 : 0) - softmax))
        }
    }
    return Float(total / Double(n))
}

// MARK: - Attention loss

/// Sigmoid cross-entropy against one-hot targets, averaged over n x classes.
public func attentionLoss(logits: UnsafePointer<Float>, count n: Int, classes: Int, labels: [Int],
                          gradLogits: UnsafeMutablePointer<Float>, gradScale: Float) -> Float {
    checkClassLabels(labels, count: n, classes: classes, loss: "attentionLoss")
    let c = Double(gradScale) / Double(n * classes)
    var total = 0.0
    for i in 0..<n {
        for k in 0..<classes {
            let x = Double(logits[i * classes + k])
            let t: Double = labels[i] == k ? 1 : 0
            // max(x, 0) - x t + log(1 + exp(-|x|)): stable for large |x|.
            total += max(x, 0) - x * t + log1p(exp(-abs(x)))
            let sigmoid = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x))
            gradLogits[i * classes + k] = Float(c * (sigmoid - t))
        }
    }
    return Float(total / Double(n * classes))
}

private func checkClassLabels(_ labels: [Int], count n: Int, classes: Int, loss: String) {
    precondition(labels.count == n, "\(loss): \(labels.count) labels for \(n) rows")
    precondition(n > 0 && classes > 0, "\(loss): empty input (\(n) rows, \(classes) classes)")
    for (i, y) in labels.enumerated() {
        precondition((0..<classes).contains(y), "\(loss): label \(y) of row \(i) is outside 0..<\(classes)")
    }
}
