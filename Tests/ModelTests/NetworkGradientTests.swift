import Foundation
import MancsModel
import Testing
import TestSupport

/// The whole network differentiated against finite differences: the scalar is a
/// fixed random weighting of the three outputs, so its gradient with respect to
/// them is exactly those weights (the losses have their own checks).
@Suite struct NetworkGradientTests {
    let batch = 8
    let net: MancsNetwork
    let images: [Float]
    let wRank: [Float], wCls: [Float], wAtt: [Float]

    init() throws {
        let c = tinyConfig()
        net = try MancsNetwork(config: c, maxBatch: batch, seed: 3)
        images = randomImages(c, batch: batch, seed: 11)
        var rng = SplitMix64(seed: 5)
        wRank = rng.array(batch * c.resolvedEmbeddingDim)
        wCls = rng.array(batch * c.numClasses)
        wAtt = rng.array(batch * c.numClasses)
    }

    /// Training-mode forward of `images`, then the weighted sum of the outputs.
    func scalar(_ images: [Float]) -> Double {
        let out = images.withUnsafeBufferPointer { net.forward(images: $0.baseAddress!, batch: batch, training: true) }
        return dot(out.fRank, wRank) + dot(out.clsLogits, wCls) + dot(out.attLogits, wAtt)
    }

    /// Analytic gradients: parameters (zeroed first) and input images.
    func analytic(onGradientsReady: ((Range<Int>) -> Void)? = nil) -> [Float] {
        net.parameters.zeroGradients()
        _ = scalar(images)
        var gradImages = [Float](repeating: 0, count: images.count)
        gradImages.withUnsafeMutableBufferPointer { g in
            net.backward(gradFRank: wRank, gradClsLogits: wCls, gradAttLogits: wAtt, gradImages: g.baseAddress!,
                         onGradientsReady: onGradientsReady)
        }
        return gradImages
    }

    /// (f(+h) - f(-h)) / 2h for a perturbation applied by `set`.
    func centralDifference(h: Float, _ set: (Float) -> Void) -> Double {
        set(h)
        let up = scalar(images)
        set(-h)
        let down = scalar(images)
        set(0)
        return (up - down) / (2 * Double(h))
    }

    /// Float32 forward noise limits single-coordinate differences on a deep
    /// network, so each tensor is checked along a random direction (signal |g|,
    /// same noise) and at its largest-gradient coordinate.
    @Test func parametersAndPixelsMatchFiniteDifferences() {
        let gradImages = analytic()
        let p = net.parameters
        let sampled = ["backbone.conv1.weight", "backbone.bn1.weight", "backbone.layer1.0.conv2.weight",
                       "backbone.layer2.1.bn1.bias", "backbone.layer2.0.downsample.1.weight", "backbone.layer3.0.conv3.weight",
                       "backbone.layer1.0.conv3.weight", "backbone.layer1.0.downsample.0.weight", "backbone.layer2.1.bn3.weight",
                       "backbone.layer4.0.prelu.weight", "attention.layer2.conv1.weight", "attention.layer4.conv2.bias",
                       "heads.rank.fc.weight", "heads.cls.bn.weight", "heads.cls.fc.bias", "heads.att.classifier.weight"]
        var rng = SplitMix64(seed: 9)
        // Small steps: at random init the network is kinked (ReLU) at the 1e-3 scale;
        // smaller ones drown in float32 noise.
        let h: Float = 1e-4
        for name in sampled {
            let t = p.info(name)!
            let values = p.export(t), grad = p.export(t, gradient: true)
            // Half along the gradient itself (signal above the noise), half random.
            let gmax = grad.map { abs($0) }.max()!
            let direction = zip(grad, rng.array(t.count)).map { 0.5 * $0 / max(gmax, 1e-12) + 0.5 * $1 }
            let numeric = centralDifference(h: h) { h in p.load(t, from: zip(values, direction).map { $0 + h * $1 }) }
            let expected = zip(grad, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            #expect(abs(numeric - expected) <= 0.1 * abs(expected) + 1e-2, "\(name) along a direction: numeric \(numeric), analytic \(expected)")
            let top = grad.indices.max { abs(grad[$0]) < abs(grad[$1]) }!
            let single = centralDifference(h: h) { h in
                var v = values
                v[top] += h
                p.load(t, from: v)
            }
            #expect(abs(single - Double(grad[top])) <= 0.1 * abs(Double(grad[top])) + 2e-2,
                    "\(name)[\(top)]: numeric \(single), analytic \(grad[top])")
        }
        // Input pixels: along a direction, and the three most sensitive pixels.
        let pixels = images
        let gmax = gradImages.map { abs($0) }.max()!
        let direction = zip(gradImages, rng.array(pixels.count)).map { 0.5 * $0 / gmax + 0.5 * $1 }
        func scalarAt(_ x: [Float]) -> Double { scalar(x) }
        let numeric = (scalarAt(zip(pixels, direction).map { $0 + h * $1 }) - scalarAt(zip(pixels, direction).map { $0 - h * $1 })) / (2 * Double(h))
        let expected = zip(gradImages, direction).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        #expect(abs(numeric - expected) <= 0.1 * abs(expected) + 1e-2, "pixels along a direction: numeric \(numeric), analytic \(expected)")
        for i in gradImages.indices.sorted(by: { abs(gradImages[$0]) > abs(gradImages[$1]) }).prefix(3) {
            var up = pixels, down = pixels
            up[i] += h
            down[i] -= h
            let single = (scalarAt(up) - scalarAt(down)) / (2 * Double(h))
            #expect(abs(single - Double(gradImages[i])) <= 0.1 * abs(Double(gradImages[i])) + 2e-2,
                    "pixel \(i): numeric \(single), analytic \(gradImages[i])")
        }
    }

    @Test func gradientRangesArriveFinalInDecreasingOrderAndCoverEverything() {
        var ranges: [Range<Int>] = []
        var snapshots: [[Float]] = []
        let g = net.parameters.grads!
        _ = analytic { range in
            ranges.append(range)
            snapshots.append(Array(g[range]))
        }
        #expect(ranges.first?.upperBound == net.parameters.count)
        #expect(ranges.last?.lowerBound == 0)
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(b.upperBound == a.lowerBound) }
        #expect(ranges.reduce(0) { $0 + $1.count } == net.parameters.count)
        // What was reported is what the backward ends with.
        for (range, snap) in zip(ranges, snapshots) { #expect(Array(g[range]) == snap) }
        // One range per layer: the att classifier's weight and bias come first.
        let att = net.parameters.info("heads.att.classifier.weight")!
        #expect(ranges.first == att.offset..<net.parameters.count)
    }

    /// Parameter gradients, input gradient and running statistics of one training step of
    /// `network` (built like `net`, seed 3) on the suite's images and output weights.
    func step(_ network: MancsNetwork) -> (grads: [Float], gradImages: [Float], buffers: [Float]) {
        network.parameters.zeroGradients()
        _ = images.withUnsafeBufferPointer { network.forward(images: $0.baseAddress!, batch: batch, training: true) }
        var gradImages = [Float](repeating: 0, count: images.count)
        gradImages.withUnsafeMutableBufferPointer { g in
            network.backward(gradFRank: wRank, gradClsLogits: wCls, gradAttLogits: wAtt, gradImages: g.baseAddress!)
        }
        return (Array(network.parameters.grads!), gradImages, Array(network.buffers.values))
    }

    /// Rebuilding conv3's output in backward (the memory saving, with the fold off), or
    /// keeping it in a scratch buffer's free tail instead, must change nothing: the same
    /// gradients, input gradient and running statistics, bit for bit, as keeping every
    /// conv3 output in the arena, for every choice of stages. With all four stages and
    /// tails, stages 3 and 4 share the buffers' tails.
    @Test(arguments: [(Set<Int>(), true), (Set([1]), true), (Set([1, 2, 3, 4]), true), (Set([1, 2, 3, 4]), false),
                      (Set([1, 2, 3]), false), (Set([3]), true)] as [(Set<Int>, Bool)])
    func rebuildingConv3ChangesNoBit(stages: Set<Int>, inScratch: Bool) throws {
        let kept = try MancsNetwork(config: net.config, maxBatch: batch, seed: 3, rebuildConv3Stages: [], foldBackward: false)
        let other = try MancsNetwork(config: net.config, maxBatch: batch, seed: 3, rebuildConv3Stages: stages,
                                     conv3InScratch: inScratch, foldBackward: false)
        // Stage 1 and 2 maps fill the buffers while theirs are live; stages 3 and 4 fit.
        let blocksIn = { (s: Set<Int>) in s.reduce(0) { $0 + self.net.config.blocks[$1 - 1] } }
        #expect(other.conv3NotKept.rebuilt == blocksIn(inScratch ? stages.intersection([1, 2]) : stages))
        #expect(other.conv3NotKept.folded == 0)
        #expect(Array(other.parameters.values) == Array(kept.parameters.values))
        let a = step(kept), b = step(other)
        #expect(b.grads == a.grads)
        #expect(b.gradImages == a.gradImages)
        #expect(b.buffers == a.buffers)
        #expect(a.gradImages.contains { $0 != 0 })
    }

    /// With the fold on (the default), blocks that do not keep conv3's output run conv3 and
    /// bn3 backward as one (and stage 1's projection its shortcut conv and BN): the forward
    /// is the same bit for bit, the gradients are those of the network that keeps and
    /// rebuilds without folding, up to float rounding (each tensor within 1e-4 of its largest value).
    @Test(arguments: [Set([1, 2, 3, 4]), Set([1, 2, 3]), Set([2])])
    func foldingConv3BackwardMatchesKeepingIt(stages: Set<Int>) throws {
        let kept = try MancsNetwork(config: net.config, maxBatch: batch, seed: 3, rebuildConv3Stages: [], foldBackward: false)
        let folded = try MancsNetwork(config: net.config, maxBatch: batch, seed: 3, rebuildConv3Stages: stages,
                                      conv3InScratch: false)
        #expect(folded.conv3NotKept.folded == stages.reduce(0) { $0 + net.config.blocks[$1 - 1] } - (stages.contains(4) ? 1 : 0),
                "every block that does not keep conv3 folds, but the last (PReLU), which rebuilds")
        let a = step(kept), b = step(folded)
        #expect(b.buffers == a.buffers, "the forward is unchanged")
        var worst = (error: Float(0), name: "")
        for t in kept.parameters.tensors {
            let x = Array(b.grads[t.offset..<(t.offset + t.count)]), y = Array(a.grads[t.offset..<(t.offset + t.count)])
            let scale = max(y.map { abs($0) }.max()!, 1e-12)
            let error = zip(x, y).map { abs($0 - $1) }.max()! / scale
            if error > worst.error { worst = (error, t.name) }
        }
        #expect(worst.error < 1e-4, "largest relative difference \(worst.error) in \(worst.name)")
        let scale = a.gradImages.map { abs($0) }.max()!
        #expect(zip(b.gradImages, a.gradImages).allSatisfy { abs($0 - $1) <= 1e-4 * scale })
        // Folding changed the arithmetic: not the same bits (else this test would not test it).
        #expect(b.grads != a.grads)
    }

    @Test func defaultKeepsStage3Conv3InScratch() {
        // tinyConfig: blocks 1,2,1,1; stages 3 and 4 fit in scratch, stages 1 and 2 fold conv3 and bn3 backward.
        #expect(net.conv3NotKept.folded == 3 && net.conv3NotKept.rebuilt == 0 && net.conv3NotKept.blocks == 5)
    }

    @Test func backwardAccumulatesIntoTheGradients() {
        _ = analytic()
        let once = Array(net.parameters.grads!)
        _ = scalar(images)  // backward runs once per forward
        net.backward(gradFRank: wRank, gradClsLogits: wCls, gradAttLogits: wAtt)
        let twice = Array(net.parameters.grads!)
        // GEMMs accumulate in blocks, so the sum is 2x up to rounding.
        let scale = once.map { abs($0) }.max()!
        #expect(zip(once, twice).allSatisfy { abs(2 * $0 - $1) <= 1e-5 * scale })
        #expect(once.contains { $0 != 0 })
    }

    @Test func inferenceUsesRunningStatisticsAndTrainingUpdatesThem() {
        let before = Array(net.buffers.values)
        let n = batch, c = net.config
        let batchOut = images.withUnsafeBufferPointer { p -> [Float] in
            let o = net.forward(images: p.baseAddress!, batch: n, training: false)
            return Array(UnsafeBufferPointer(start: o.fRank, count: n * c.resolvedEmbeddingDim))
        }
        #expect(Array(net.buffers.values) == before)
        // Each image alone gives its row of the batch result.
        let e = c.resolvedEmbeddingDim, per = c.height * c.width * 3
        for i in [0, 3] {
            let single = images.withUnsafeBufferPointer { p -> [Float] in
                let o = net.forward(images: p.baseAddress! + i * per, batch: 1, training: false)
                return Array(UnsafeBufferPointer(start: o.fRank, count: e))
            }
            let row = Array(batchOut[(i * e)..<((i + 1) * e)])
            let err = zip(single, row).map { abs($0 - $1) }.max()!
            #expect(err <= 1e-4 * max(1, row.map { abs($0) }.max()!))
        }
        _ = scalar(images)
        #expect(Array(net.buffers.values) != before)
        // Batches below the maximum work in training too.
        images.withUnsafeBufferPointer { _ = net.forward(images: $0.baseAddress!, batch: 2, training: true) }
        net.backward(gradFRank: wRank, gradClsLogits: wCls, gradAttLogits: wAtt)
        #expect(net.parameters.grads!.allSatisfy { $0.isFinite })
        #expect(net.attentionMasks.map(\.stage) == [2, 4])
        #expect(net.attentionMasks.allSatisfy { m in (0..<m.count).allSatisfy { m.values[$0] > 0 && m.values[$0] < 1 } })
    }
}
