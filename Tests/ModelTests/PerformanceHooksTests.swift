import MancsModel
import Testing
import TestSupport

/// The hooks `mancs bench` relies on: the analytic FLOP count, the opt-in layer
/// profiler (which must not change results), and the gradient completion observer.
@Suite struct PerformanceHooksTests {
    @Test func resNet50StepCosts16Point24GFLOPPerImage() throws {
        let net = try MancsNetwork(config: MancsConfig(), maxBatch: 1, seed: 0)
        let f = net.stepFLOPsPerImage
        // The figures: 5.46 forward + 10.77 backward = 16.24 GFLOP.
        #expect(abs(f.forward / 1e9 - 5.46) < 0.005)
        #expect(abs(f.backward / 1e9 - 10.77) < 0.005)
        #expect(abs(f.total / 1e9 - 16.24) < 0.01)
        #expect(net.convolutionShapes.count == 1 + 16 * 3 + 4 + 2 * 3)
    }

    /// One training forward + backward; returns outputs and gradients.
    private func step(_ net: MancsNetwork, _ images: [Float], batch: Int) -> [Float] {
        let c = net.config
        let out = images.withUnsafeBufferPointer { net.forward(images: $0.baseAddress!, batch: batch, training: true) }
        let e = batch * c.resolvedEmbeddingDim, k = batch * c.numClasses
        var rng = SplitMix64(seed: 7)
        let gRank = rng.array(e), gCls = rng.array(k), gAtt = rng.array(k)
        var result = Array(UnsafeBufferPointer(start: out.fRank, count: e))
        result += Array(UnsafeBufferPointer(start: out.clsLogits, count: k))
        net.parameters.zeroGradients()
        net.backward(gradFRank: gRank, gradClsLogits: gCls, gradAttLogits: gAtt)
        return result + Array(net.parameters.grads!)
    }

    @Test func profilerTimesEveryKindAndChangesNothing() throws {
        let c = tinyConfig(), batch = 4
        let images = randomImages(c, batch: batch, seed: 3)
        let plain = try MancsNetwork(config: c, maxBatch: batch, seed: 5)
        let profiled = try MancsNetwork(config: c, maxBatch: batch, seed: 5)
        let profiler = LayerProfiler()
        profiled.profiler = profiler
        #expect(step(plain, images, batch: batch) == step(profiled, images, batch: batch))
        for kind in LayerKind.allCases { #expect(profiler.calls[kind.rawValue] > 0, "no \(kind.name) call timed") }
        let kinds = profiler.nanoseconds.reduce(0, +)
        #expect(kinds > 0 && kinds <= profiler.forwardNanoseconds + profiler.backwardNanoseconds)
        profiler.reset()
        #expect(profiler.nanoseconds.allSatisfy { $0 == 0 } && profiler.forwardNanoseconds == 0)
    }

    @Test func completionObserverSeesEveryParameterOnce() throws {
        let c = tinyConfig(), batch = 4
        let net = try MancsNetwork(config: c, maxBatch: batch, seed: 5)
        var seen = [Int](repeating: 0, count: net.parameters.count)
        net.gradientCompletionObserver = { range in for i in range { seen[i] += 1 } }
        _ = step(net, randomImages(c, batch: batch, seed: 3), batch: batch)
        #expect(seen.allSatisfy { $0 == 1 })
    }
}
