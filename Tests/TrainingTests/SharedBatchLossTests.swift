import Testing
import MancsTraining
import TestSupport

// The triplet loss of a batch split over replicas (global triplet mining, SPEC
// section 6), without MPI: a replica's gathered batch is the whole batch, so its
// loss, negatives and gradient rows must be the one-process ones.

/// Stands in for the other replicas: the whole batch is known, and the gather
/// checks that this replica passed its own shard.
private final class WholeBatch: ReplicaBatchGroup {
    let rows: [Float]  // [features, label] rows of the whole batch
    let replicas: Int
    let index: Int
    init(rows: [Float], replicas: Int, index: Int) { self.rows = rows; self.replicas = replicas; self.index = index }
    func allGather(_ local: [Float]) -> [Float] {
        let shard = rows.count / replicas
        #expect(local == Array(rows[(index * shard)..<((index + 1) * shard)]), "replica \(index) gathered another shard")
        return rows
    }
}

@Suite struct SharedBatchLossTests {
    // P = 8 identities x K = 4, identity-major as the PK sampler lays them out.
    let labels = (0..<32).map { [5, 1, 9, 0, 12, 3, 7, 2][$0 / 4] }
    let dim = 6

    @Test(arguments: [2, 4, 8], [NegativeSampling.curriculum(CurriculumSchedule(), epoch: 3), .hardest, .random])
    func shardRowsAreTheWholeBatchGradient(replicas: Int, sampling: NegativeSampling) {
        var data = SplitMix64(seed: 41)
        let n = labels.count, features = data.array(n * dim)
        // One process: the whole batch.
        var whole = [Float](repeating: .nan, count: n * dim)
        var rng = SplitMix64(seed: 9)
        let reference = tripletLoss(features: features, count: n, dim: dim, labels: labels, margin: 0.5,
                                    sampling: sampling, rng: &rng, gradFeatures: &whole, gradScale: 0.8)
        #expect(reference.loss > 0)
        var rows = [Float]()
        for i in 0..<n { rows += features[(i * dim)..<((i + 1) * dim)] + [Float(labels[i])] }

        // Each replica: its shard's rows of `replicas` x the whole gradient; summed
        // over replicas and divided by their count (the gradient allreduce's
        // average), the one-process gradient.
        let m = n / replicas
        var averaged = [Float](repeating: 0, count: n * dim)
        for r in 0..<replicas {
            let group = WholeBatch(rows: rows, replicas: replicas, index: r)
            var grad = [Float](repeating: .nan, count: m * dim)
            var rng = SplitMix64(seed: 9)  // the same stream on every replica
            let shard = Array(features[(r * m * dim)..<((r + 1) * m * dim)])
            let result = sharedBatchTripletLoss(features: shard, count: m, dim: dim, labels: Array(labels[(r * m)..<((r + 1) * m)]),
                                                group: group, margin: 0.5, sampling: sampling, rng: &rng,
                                                gradFeatures: &grad, gradScale: 0.8)
            #expect(result.loss == reference.loss, "replica \(r) of \(replicas): loss")
            #expect(result.negatives == reference.negatives, "replica \(r) of \(replicas): negatives")
            for j in 0..<(m * dim) {
                #expect(abs(grad[j] - Float(replicas) * whole[r * m * dim + j]) <= 1e-6 * abs(whole[r * m * dim + j]) * Float(replicas) + 1e-9)
                averaged[r * m * dim + j] += grad[j] / Float(replicas)
            }
        }
        let worst = zip(averaged, whole).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-7, "averaged replica gradient vs one process: \(worst)")
    }

    @Test func oneIdentityPerShardStillHasNegativesInTheWholeBatch() {
        // 8 replicas, P = 8: a shard alone has no negative; the gathered batch has 28 per anchor.
        var data = SplitMix64(seed: 42)
        let n = labels.count, features = data.array(n * dim)
        var rows = [Float]()
        for i in 0..<n { rows += features[(i * dim)..<((i + 1) * dim)] + [Float(labels[i])] }
        var grad = [Float](repeating: .nan, count: 4 * dim)
        var rng = SplitMix64(seed: 1)
        let result = sharedBatchTripletLoss(features: Array(features[0..<(4 * dim)]), count: 4, dim: dim,
                                            labels: Array(labels[0..<4]), group: WholeBatch(rows: rows, replicas: 8, index: 0),
                                            margin: 0.5, sampling: .random, rng: &rng, gradFeatures: &grad, gradScale: 1)
        #expect(result.pairs.count == 8 * 4 * 3)
        #expect(zip(result.pairs, result.negatives).allSatisfy { labels[$0.anchor] != labels[$1] })
        #expect(grad.allSatisfy { $0.isFinite })
    }
}
