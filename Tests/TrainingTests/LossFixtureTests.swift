import Foundation
import Testing
import HDF5Kit
import MancsTraining
import TestSupport

// The losses against the PyTorch float64 dumps in shared/fixtures: the heads'
// outputs go in, the reference's losses, pairs and hardest negatives come out.

/// Relative difference |a - b| / max(|b|, tiny).
func relativeError(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-30) }

@Suite struct LossFixtureTests {
    /// Every fixture, failing (not silently passing) when there are none.
    static func fixtures() -> [URL] {
        let found = SharedFiles.fixtures
        #expect(!found.isEmpty, "no fixtures under shared/fixtures (set MANCS_SHARED)")
        return found
    }

    struct Forward {
        let labels: [Int]
        let fRank: [Float], embedding: Int
        let clsLogits: [Float], attLogits: [Float], classes: Int
        let pairs: [Int], negatives: [Int]
        let lossRank: Float, lossCls: Float, lossAtt: Float
        let margin: Float, gamma: Float

        init(_ url: URL) throws {
            let root = try HDF5File(openForReading: url.path).root
            labels = try root.read("input/labels", as: Int64.self).values.map { Int($0) }
            let f = try root.read("forward/f_rank", as: Float.self)
            fRank = f.values; embedding = f.shape[1]
            let c = try root.read("forward/cls_logits", as: Float.self)
            clsLogits = c.values; classes = c.shape[1]
            attLogits = try root.read("forward/att_logits", as: Float.self).values
            pairs = try root.read("forward/pairs", as: Int64.self).values.map { Int($0) }
            negatives = try root.read("forward/negatives", as: Int64.self).values.map { Int($0) }
            lossRank = try root.read("forward/loss_rank", as: Float.self).values[0]
            lossCls = try root.read("forward/loss_cls", as: Float.self).values[0]
            lossAtt = try root.read("forward/loss_att", as: Float.self).values[0]
            let config = try root.group("config")
            margin = Float(try config.attribute("margin", as: Double.self)[0])
            gamma = Float(try config.attribute("gamma", as: Double.self)[0])
        }
    }

    @Test func rankLossWithHardestNegativesMatchesFixtures() throws {
        for url in Self.fixtures() {
            let fx = try Forward(url)
            var grad = [Float](repeating: 0, count: fx.fRank.count)
            var rng = SplitMix64(seed: 0)
            let result = tripletLoss(features: fx.fRank, count: fx.labels.count, dim: fx.embedding, labels: fx.labels,
                                     margin: fx.margin, sampling: .hardest, rng: &rng,
                                     gradFeatures: &grad, gradScale: 1)
            let name = url.lastPathComponent
            #expect(result.pairs.flatMap { [$0.anchor, $0.positive] } == fx.pairs, "\(name): pairs")
            #expect(result.negatives == fx.negatives, "\(name): hardest negatives")
            #expect(relativeError(Double(result.loss), Double(fx.lossRank)) < 1e-4,
                    "\(name): loss_rank \(result.loss) vs \(fx.lossRank)")
            // The same negatives given explicitly give the same loss and gradient.
            var fixedGrad = [Float](repeating: 0, count: grad.count)
            let fixed = tripletLoss(features: fx.fRank, count: fx.labels.count, dim: fx.embedding, labels: fx.labels,
                                    margin: fx.margin, sampling: .fixed(fx.negatives), rng: &rng,
                                    gradFeatures: &fixedGrad, gradScale: 1)
            #expect(fixed.loss == result.loss && fixedGrad == grad, "\(name): fixed negatives")
            #expect(grad.contains { $0 != 0 }, "\(name): the rank loss has a gradient")
        }
    }

    @Test func focalAndAttentionLossesMatchFixtures() throws {
        for url in Self.fixtures() {
            let fx = try Forward(url)
            let n = fx.labels.count
            var grad = [Float](repeating: 0, count: fx.clsLogits.count)
            let cls = focalLoss(logits: fx.clsLogits, count: n, classes: fx.classes, labels: fx.labels,
                                gamma: fx.gamma, gradLogits: &grad, gradScale: 1)
            let att = attentionLoss(logits: fx.attLogits, count: n, classes: fx.classes, labels: fx.labels,
                                    gradLogits: &grad, gradScale: 1)
            let name = url.lastPathComponent
            #expect(relativeError(Double(cls), Double(fx.lossCls)) < 1e-4, "\(name): loss_cls \(cls) vs \(fx.lossCls)")
            #expect(relativeError(Double(att), Double(fx.lossAtt)) < 1e-4, "\(name): loss_att \(att) vs \(fx.lossAtt)")
        }
    }

    @Test func curriculumProbabilitiesMatchFixtures() throws {
        var checked = 0
        for url in Self.fixtures() {
            let group = try HDF5File(openForReading: url.path).root.group("curriculum")
            for name in try group.members() {
                // weights_<Nn>_<epoch>
                let parts = name.split(separator: "_")
                let negatives = try #require(parts.count == 3 ? Int(parts[1]) : nil, "dataset \(name)")
                let epoch = try #require(Int(parts[2]), "dataset \(name)")
                let expected = try group.read(name, as: Double.self).values
                let got = curriculumProbabilities(negatives: negatives, epoch: epoch, schedule: CurriculumSchedule())
                #expect(got.count == expected.count, "\(name): length")
                let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? .infinity
                #expect(worst < 1e-9, "\(url.lastPathComponent) \(name): max abs error \(worst)")
                checked += 1
            }
        }
        #expect(checked >= 21)
    }

    /// The negatives `tripletLoss` actually draws, at every epoch and negative
    /// count the fixtures hold, against the reference's `curriculum_weights`:
    /// total-variation distance of 20,000 draws (the expected TV of a correct
    /// sampler is below 0.5 * sqrt(Nn / draws) ~ 0.03 for Nn = 60; a
    /// distribution shifted by one epoch or one index is 0.1 to 1 away).
    @Test func curriculumDrawsMatchTheReferenceWeights() throws {
        let url = try #require(Self.fixtures().first, "no fixture under shared/fixtures")
        let group = try HDF5File(openForReading: url.path).root.group("curriculum")
        var checked = 0
        for negatives in [12, 60] {
            // Anchor 0 and positive 1 at 0 and 0.01; negative r (0 = hardest) at
            // 1 + r, placed at batch index 2 + (r * 7) % Nn so ranks are scrambled.
            let n = negatives + 2
            var features = [Float](repeating: 0, count: n)
            features[1] = 0.01
            var rankOfIndex = [Int](repeating: -1, count: n)
            for r in 0..<negatives { let i = 2 + (r * 7) % negatives; features[i] = Float(1 + r); rankOfIndex[i] = r }
            let labels = [0, 0] + (1...negatives).map { $0 }
            var grad = [Float](repeating: 0, count: n)
            for epoch in [0, 10, 29, 30, 45, 60, 100] {
                let expected = try group.read("weights_\(negatives)_\(epoch)", as: Double.self).values
                var rng = SplitMix64(seed: UInt64(1000 * negatives + epoch))
                var counts = [Double](repeating: 0, count: negatives)
                let draws = 20_000
                for _ in 0..<(draws / 2) {  // two pairs per batch: (0, 1) and (1, 0)
                    let r = tripletLoss(features: features, count: n, dim: 1, labels: labels, margin: 0.5,
                                        sampling: .curriculum(CurriculumSchedule(), epoch: epoch), rng: &rng,
                                        gradFeatures: &grad, gradScale: 1)
                    for neg in r.negatives { counts[rankOfIndex[neg]] += 1 }
                }
                let tv = 0.5 * zip(counts, expected).reduce(0.0) { $0 + abs($1.0 / Double(draws) - $1.1) }
                #expect(tv < 0.03, "Nn \(negatives), epoch \(epoch): total variation \(tv)")
                checked += 1
            }
        }
        #expect(checked == 14)
    }
}
