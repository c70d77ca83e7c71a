import Testing
import MancsTraining
import TestSupport

// Curriculum probabilities beyond the fixtures (the underflow fallback) and the
// sampling itself: empirical frequencies of drawn negatives against the
// probabilities, through `tripletLoss`.

/// Pearson's chi-square statistic of observed counts against probabilities.
func chiSquare(counts: [Int], probabilities: [Double]) -> Double {
    let total = Double(counts.reduce(0, +))
    return zip(counts, probabilities).reduce(0.0) { sum, cp in
        let expected = total * cp.1
        return expected > 0 ? sum + (Double(cp.0) - expected) * (Double(cp.0) - expected) / expected
                            : sum + (cp.0 == 0 ? 0 : .infinity)
    }
}

@Suite struct CurriculumTests {
    @Test func probabilitiesFollowTheSchedule() {
        // Epoch 0: mu = Nn, sigma = 15 * 1000 -> nearly uniform, rising toward the easy end.
        let early = curriculumProbabilities(negatives: 60, epoch: 0, schedule: CurriculumSchedule())
        #expect(abs(early.reduce(0, +) - 1) < 1e-12)
        #expect(early.last! > early.first! && early.last! / early.first! < 1.01)
        // Epoch 45: mu = 0, sigma = 15 * 0.001^0.5 ~ 0.47 -> the hardest dominates.
        let late = curriculumProbabilities(negatives: 60, epoch: 45, schedule: CurriculumSchedule())
        #expect(late[0] > 0.8 && late[1] < 0.2 && late[5] < 1e-20)
    }

    @Test func muAndSigmaAreThePapersSchedule() {
        let schedule = CurriculumSchedule(t0: 30, t1: 60, a: 15, b: 0.001)
        // mu = max(Nn - Nn/t0 * t, 0): from Nn down to 0 at t0, then 0.
        #expect(schedule.muSigma(negatives: 60, epoch: 0).mu == 60)
        #expect(schedule.muSigma(negatives: 60, epoch: 15).mu == 30)
        #expect(schedule.muSigma(negatives: 60, epoch: 45).mu == 0)
        // sigma = a * b^((t - t0)/(t1 - t0)): a at t0, a*b at t1.
        #expect(schedule.muSigma(negatives: 60, epoch: 30).sigma == 15)
        #expect(abs(schedule.muSigma(negatives: 60, epoch: 60).sigma - 0.015) < 1e-15)
        // The probabilities peak at mu.
        let p = curriculumProbabilities(negatives: 60, epoch: 15, schedule: CurriculumSchedule(t0: 30, t1: 60, a: 2, b: 0.5))
        #expect(p.indices.max(by: { p[$0] < p[$1] }) == 30)
    }

    @Test func underflowFallsBackToTheIndexNearestMu() {
        // t0 = 24: mu = 12 - 0.5 t; sigma = 1e-3 * 0.001^((t-24)/(19-24)) is tiny,
        // so every weight off an integer mu underflows.
        let schedule = CurriculumSchedule(t0: 24, t1: 19, a: 1e-3, b: 0.001)
        // Epoch 19: mu = 2.5 -> Python's round gives 2 (half to even).
        let halfway = curriculumProbabilities(negatives: 12, epoch: 19, schedule: schedule)
        #expect(halfway == (0..<12).map { $0 == 2 ? 1 : 0 })
        // Epoch 0: mu = 12 -> clamped to the last index.
        let clamped = curriculumProbabilities(negatives: 12, epoch: 0, schedule: schedule)
        #expect(clamped == (0..<12).map { $0 == 11 ? 1 : 0 })
    }

    @Test func drawIndexMatchesProbabilities() {
        let probabilities = curriculumProbabilities(negatives: 12, epoch: 30, schedule: CurriculumSchedule(t0: 30, t1: 60, a: 4, b: 0.001))
        var rng = SplitMix64(seed: 99)
        var counts = [Int](repeating: 0, count: 12)
        for _ in 0..<100_000 { counts[drawIndex(probabilities: probabilities, rng: &rng)] += 1 }
        // 11 degrees of freedom: P(chi2 > 40) ~ 3e-5.
        let chi2 = chiSquare(counts: counts, probabilities: probabilities)
        #expect(chi2 < 40, "chi-square \(chi2), counts \(counts)")
        #expect(drawIndex(probabilities: [0, 1, 0], rng: &rng) == 1)
    }

    /// A batch where anchor 0's negatives have a known distance order: the
    /// negative at batch index 2 + r is the r-th closest to anchor 0.
    struct RankedBatch {
        let labels = [0, 0, 1, 2, 3, 4, 5, 6]
        let features: [Float]
        init() {
            // 1-D features: anchor 0 at 0, positive 1 at 0.1; negatives at
            // increasing distance but placed in a scrambled index order.
            let order = [3, 0, 5, 1, 4, 2]  // rank of the negative at index 2 + k
            features = [0, 0.1] + order.map { Float($0 + 1) * 0.3 }
            ranks = order
        }
        let ranks: [Int]
    }

    @Test(arguments: [false, true])
    func tripletSamplingFrequenciesMatch(curriculum: Bool) {
        let batch = RankedBatch()
        let schedule = CurriculumSchedule(t0: 30, t1: 60, a: 2, b: 0.001)
        let sampling: NegativeSampling = curriculum ? .curriculum(schedule, epoch: 30) : .random
        let expected = curriculum ? curriculumProbabilities(negatives: 6, epoch: 30, schedule: schedule)
                                  : [Double](repeating: 1.0 / 6, count: 6)
        var rng = SplitMix64(seed: 5)
        var counts = [Int](repeating: 0, count: 6)
        var grad = [Float](repeating: 0, count: batch.labels.count)
        for _ in 0..<10_000 {
            let result = tripletLoss(features: batch.features, count: 8, dim: 1, labels: batch.labels, margin: 0.5,
                                     sampling: sampling, rng: &rng, gradFeatures: &grad, gradScale: 1)
            // Pair 0 is (anchor 0, positive 1); tally the distance rank of its negative.
            #expect(result.pairs[0] == (0, 1))
            counts[batch.ranks[result.negatives[0] - 2]] += 1
        }
        // 5 degrees of freedom: P(chi2 > 30) ~ 1.5e-5.
        let chi2 = chiSquare(counts: counts, probabilities: expected)
        #expect(chi2 < 30, "chi-square \(chi2), counts \(counts), expected \(expected)")
        if curriculum { #expect(counts[0] > counts[3], "the curriculum favours hard negatives: \(counts)") }
    }

    @Test func samplingIsReproducibleFromTheSeed() {
        let batch = RankedBatch()
        func draw(seed: UInt64) -> [Int] {
            var rng = SplitMix64(seed: seed)
            var grad = [Float](repeating: 0, count: 8)
            return (0..<20).flatMap { _ in
                tripletLoss(features: batch.features, count: 8, dim: 1, labels: batch.labels, margin: 0.5,
                            sampling: .curriculum(CurriculumSchedule(), epoch: 10), rng: &rng,
                            gradFeatures: &grad, gradScale: 1).negatives
            }
        }
        #expect(draw(seed: 1) == draw(seed: 1))
        #expect(draw(seed: 1) != draw(seed: 2))
    }
}
