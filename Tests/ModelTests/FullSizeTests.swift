import Foundation
import MancsModel
import Testing
import TestSupport

@Suite struct FullSizeTests {
    /// ResNet-50 Mancs at 256x128, batch 4: one training forward + backward runs,
    /// allocates nothing per step, and gives finite outputs and gradients.
    @Test func resNet50ForwardAndBackwardAtBatch4() throws {
        let batch = 4
        let net = try MancsNetwork(config: MancsConfig(), maxBatch: batch, seed: 1)
        let c = net.config
        let images = randomImages(c, batch: batch, seed: 2)
        var rng = SplitMix64(seed: 3)
        let gRank = rng.array(batch * c.resolvedEmbeddingDim, scale: 1e-2)
        let gCls = rng.array(batch * c.numClasses, scale: 1e-2)
        let gAtt = rng.array(batch * c.numClasses, scale: 1e-2)

        #if !DEBUG
        // Release: one warm-up step first (page faults on first touch), so the printed time is a steady step.
        images.withUnsafeBufferPointer { _ = net.forward(images: $0.baseAddress!, batch: batch, training: true) }
        net.backward(gradFRank: gRank, gradClsLogits: gCls, gradAttLogits: gAtt)
        net.parameters.zeroGradients()
        #endif
        let t0 = Date()
        let out = images.withUnsafeBufferPointer { net.forward(images: $0.baseAddress!, batch: batch, training: true) }
        let t1 = Date()
        var ranges = 0
        net.backward(gradFRank: gRank, gradClsLogits: gCls, gradAttLogits: gAtt) { _ in ranges += 1 }
        let t2 = Date()
        print(String(format: "full-size Mancs (ResNet-50, 256x128) batch %d: forward %.2f s, backward %.2f s, %.1f M activation floats",
                     batch, t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), Double(net.activationFloats) / 1e6))

        let fRank = Array(UnsafeBufferPointer(start: out.fRank, count: batch * c.resolvedEmbeddingDim))
        #expect(fRank.allSatisfy(\.isFinite) && fRank.contains { $0 != 0 })
        #expect(net.attentionMasks.map { [$0.height, $0.width, $0.channels] } == [[32, 16, 512], [16, 8, 1024], [8, 4, 2048]])
        let grads = net.parameters.grads!
        let gradientsFinite = grads.allSatisfy { $0.isFinite }
        #expect(gradientsFinite)
        let conv1 = net.parameters.info("backbone.conv1.weight")!
        let stemGradientNonZero = (conv1.offset..<(conv1.offset + conv1.count)).contains { grads[$0] != 0 }
        #expect(stemGradientNonZero)
        #expect(ranges == 118)  // one per layer with parameters: 2 stem + 104 in blocks + PReLU + 6 FAB + 5 heads
    }
}
