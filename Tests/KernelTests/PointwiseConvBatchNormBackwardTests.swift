import Testing
import TestSupport
import Kernels

// `pointwiseConvBatchNormBackward` (conv3 and bn3 backward of a bottleneck in one, without
// conv3's output) against the two layers' own backward passes, against finite differences,
// and synchronised over shards.

/// z = x · Wᵀ (a 1x1 convolution as one GEMM) and the BatchNorm statistics a training
/// forward saves for it.
private func convForward(rows: Int, cin: Int, cout: Int, _ x: [Float], _ w: [Float]) -> [Float] {
    var z = [Float](repeating: .nan, count: rows * cout)
    sgemm(transA: false, transB: true, m: rows, n: cout, k: cin, alpha: 1, a: x, lda: cin, b: w, ldb: cin,
          beta: 0, c: &z, ldc: cout)
    return z
}

private func statistics(rows: Int, channels: Int, _ z: [Float], _ gamma: [Float])
    -> (y: [Float], mean: [Float], invStd: [Float]) {
    var y = z, mean = [Float](repeating: 0, count: channels), invStd = mean
    var rm = mean, rv = [Float](repeating: 1, count: channels)
    let beta = (0..<channels).map { Float($0 % 3) * 0.2 - 0.2 }
    batchNormForwardTraining(rows: rows, channels: channels, input: z, gamma: gamma, beta: beta, output: &y,
                             saveMean: &mean, saveInvStd: &invStd, runningMean: &rm, runningVar: &rv, momentum: 0.1,
                             eps: 1e-5)
    return (y, mean, invStd)
}

private func columnSums(rows: Int, channels: Int, _ g: [Float]) -> [Double] {
    var sums = [Double](repeating: 0, count: channels)
    for r in 0..<rows { for c in 0..<channels { sums[c] += Double(g[r * channels + c]) } }
    return sums
}

/// (dx, dW, dgamma, dbeta); the parameter gradients accumulate onto `start`.
private typealias Gradients = (x: [Float], w: [Float], gamma: [Float], beta: [Float])

private func folded(rows: Int, cin: Int, cout: Int, x: [Float], w: [Float], g: [Float], gamma: [Float],
                    mean: [Float], invStd: [Float], start: Gradients, reducer: BatchNormStatisticsReducer? = nil) -> Gradients {
    var out = start
    out.x = [Float](repeating: .nan, count: rows * cin)
    pointwiseConvBatchNormBackward(rows: rows, inChannels: cin, outChannels: cout, input: x, weight: w, gradOutput: g,
                                   sumG: columnSums(rows: rows, channels: cout, g), gamma: gamma, saveMean: mean,
                                   saveInvStd: invStd, gradGamma: &out.gamma, gradBeta: &out.beta, gradWeight: &out.w,
                                   gradInput: &out.x, reducer: reducer)
    return out
}

/// BatchNorm backward into dz, then the convolution's weight and input gradients from dz.
private func unfolded(rows: Int, cin: Int, cout: Int, x: [Float], w: [Float], g: [Float], gamma: [Float],
                      mean: [Float], invStd: [Float], start: Gradients) -> Gradients {
    var out = start
    let z = convForward(rows: rows, cin: cin, cout: cout, x, w)
    var dz = [Float](repeating: .nan, count: rows * cout)
    batchNormBackward(rows: rows, channels: cout, input: z, gamma: gamma, saveMean: mean, saveInvStd: invStd,
                      gradOutput: g, gradInput: &dz, gradGamma: &out.gamma, gradBeta: &out.beta)
    sgemm(transA: true, transB: false, m: cout, n: cin, k: rows, alpha: 1, a: dz, lda: cout, b: x, ldb: cin,
          beta: 1, c: &out.w, ldc: cin)
    out.x = [Float](repeating: .nan, count: rows * cin)
    sgemm(transA: false, transB: false, m: rows, n: cin, k: cout, alpha: 1, a: dz, lda: cout, b: w, ldb: cin,
          beta: 0, c: &out.x, ldc: cin)
    return out
}

/// Largest |a - b| over the largest |b|.
private func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    let scale = b.map { abs($0) }.max()!
    return zip(a, b).map { abs($0 - $1) }.max()! / max(scale, 1e-30)
}

/// A bottleneck's shapes (cin -> 4 cin) and odd ones (the own GEMM kernel takes the
/// multiples of 16, OpenBLAS the rest); x >= 0 with an offset mean, as a ReLU'd map is.
@Test("conv 1x1 + BatchNorm backward folded = BatchNorm backward, then the conv's", arguments: [
    (3000, 16, 64, 1), (3000, 16, 64, 2), (2500, 24, 40, 2), (700, 7, 5, 1),
])
func pointwiseConvBatchNormFoldedMatchesUnfolded(rows: Int, cin: Int, cout: Int, threads: Int) {
    setComputeThreads(threads)
    defer { setComputeThreads(1) }
    var rng = SplitMix64(seed: UInt64(rows + cin + threads))
    let x = rng.array(rows * cin).map { max(0, $0 + 0.3) }
    let w = rng.array(cout * cin, scale: 0.5), g = rng.array(rows * cout).map { $0 + 0.05 }
    let gamma = rng.array(cout).map { $0 + 1.5 }
    let z = convForward(rows: rows, cin: cin, cout: cout, x, w)
    let stats = statistics(rows: rows, channels: cout, z, gamma)
    let start: Gradients = ([], rng.array(cout * cin), rng.array(cout), rng.array(cout))
    let f = folded(rows: rows, cin: cin, cout: cout, x: x, w: w, g: g, gamma: gamma, mean: stats.mean,
                   invStd: stats.invStd, start: start)
    let u = unfolded(rows: rows, cin: cin, cout: cout, x: x, w: w, g: g, gamma: gamma, mean: stats.mean,
                     invStd: stats.invStd, start: start)
    // The same quantities summed in another order: float rounding apart.
    #expect(relativeError(f.x, u.x) < 2e-4, "input gradient")
    #expect(relativeError(f.w, u.w) < 2e-4, "weight gradient")
    #expect(relativeError(f.gamma, u.gamma) < 2e-4, "gamma gradient")
    #expect(relativeError(f.beta, u.beta) < 1e-5, "beta gradient: the same sums")
    #expect(f.x.allSatisfy(\.isFinite) && f.x.contains { $0 != 0 })
}

@Test("conv 1x1 + BatchNorm backward folded matches finite differences (input, weight, gamma)")
func pointwiseConvBatchNormFoldedGradient() {
    let rows = 30, cin = 5, cout = 7
    var rng = SplitMix64(seed: 91)
    var x = rng.array(rows * cin).map { $0 + 0.4 }
    var w = rng.array(cout * cin)
    var gamma = rng.array(cout).map { $0 + 1.2 }
    let r = rng.array(rows * cout)  // L = Σ y ∘ r, so dL/dy = r
    func loss(_ x: [Float], _ w: [Float], _ gamma: [Float]) -> Double {
        weightedSum(statistics(rows: rows, channels: cout, convForward(rows: rows, cin: cin, cout: cout, x, w), gamma).y, r)
    }
    let stats = statistics(rows: rows, channels: cout, convForward(rows: rows, cin: cin, cout: cout, x, w), gamma)
    let zero: Gradients = ([], [Float](repeating: 0, count: cout * cin), [Float](repeating: 0, count: cout),
                           [Float](repeating: 0, count: cout))
    let f = folded(rows: rows, cin: cin, cout: cout, x: x, w: w, g: r, gamma: gamma, mean: stats.mean,
                   invStd: stats.invStd, start: zero)
    let w0 = w, x0 = x, g0 = gamma
    // Floor 0.05: gradients under it are compared absolutely (float32 forward noise is
    // ~1e-5 there; the unfolded layers' own gradients show the same).
    let dx = gradientCheck(input: &x, analytic: f.x, floor: 0.05) { loss($0, w0, g0) }
    #expect(dx.worst < gradientTolerance, "input: \(dx)")
    let dw = gradientCheck(input: &w, analytic: f.w, floor: 0.05) { loss(x0, $0, g0) }
    #expect(dw.worst < gradientTolerance, "weight: \(dw)")
    let dg = gradientCheck(input: &gamma, analytic: f.gamma, floor: 0.05) { loss(x0, w0, $0) }
    #expect(dg.worst < gradientTolerance, "gamma: \(dg)")
}

@Test("conv 1x1 + BatchNorm backward folded, synchronised over shards = the whole batch's")
func pointwiseConvBatchNormFoldedSynchronised() {
    let rows = 600, cin = 16, cout = 64, shards = 3, m = rows / shards
    var rng = SplitMix64(seed: 5)
    let x = rng.array(rows * cin).map { max(0, $0 + 0.3) }
    let w = rng.array(cout * cin, scale: 0.5), g = rng.array(rows * cout)
    let gamma = rng.array(cout).map { $0 + 1.5 }
    let stats = statistics(rows: rows, channels: cout, convForward(rows: rows, cin: cin, cout: cout, x, w), gamma)
    let zero: Gradients = ([], [Float](repeating: 0, count: cout * cin), [Float](repeating: 0, count: cout),
                           [Float](repeating: 0, count: cout))
    let whole = folded(rows: rows, cin: cin, cout: cout, x: x, w: w, g: g, gamma: gamma, mean: stats.mean,
                       invStd: stats.invStd, start: zero)
    func shard(_ a: [Float], _ s: Int, _ width: Int) -> [Float] { Array(a[(s * m * width)..<((s + 1) * m * width)]) }
    // Each shard's contribution (`Recorder`, SyncBatchNormTests), then every shard with
    // their sum; the statistics are the whole batch's, as synchronised forward saved them.
    let parts = (0..<shards).map { s -> [Double] in
        let recorder = Recorder()
        _ = folded(rows: m, cin: cin, cout: cout, x: shard(x, s, cin), w: w, g: shard(g, s, cout), gamma: gamma,
                   mean: stats.mean, invStd: stats.invStd, start: zero, reducer: recorder)
        return recorder.calls[0]
    }
    let reducer = Summer(parts)
    var dx: [Float] = [], dw = zero.w, dgamma = zero.gamma, dbeta = zero.beta
    for s in 0..<shards {
        let part = folded(rows: m, cin: cin, cout: cout, x: shard(x, s, cin), w: w, g: shard(g, s, cout), gamma: gamma,
                          mean: stats.mean, invStd: stats.invStd, start: zero, reducer: reducer)
        dx += part.x
        for i in dw.indices { dw[i] += part.w[i] }
        for i in dgamma.indices { dgamma[i] += part.gamma[i]; dbeta[i] += part.beta[i] }
    }
    #expect(parts.count == shards && parts.allSatisfy { $0.count == 1 + 2 * cout })
    #expect(relativeError(dx, whole.x) < 2e-4, "input gradient")
    #expect(relativeError(dw, whole.w) < 2e-4, "weight gradient")
    #expect(relativeError(dgamma, whole.gamma) < 2e-4 && relativeError(dbeta, whole.beta) < 2e-4, "gamma, beta")
    // Without the sums over shards, each shard's input gradient is its own batch's: different.
    let alone = folded(rows: m, cin: cin, cout: cout, x: shard(x, 0, cin), w: w, g: shard(g, 0, cout), gamma: gamma,
                       mean: stats.mean, invStd: stats.invStd, start: zero)
    #expect(relativeError(alone.x, shard(whole.x, 0, cin)) > 1e-3)
}

@Test("ReLU backward with the gradient's sums alone: the same mask and sums as with a BatchNorm's", arguments: [1, 2])
func reluBackwardWithSumsAlone(threads: Int) {
    setComputeThreads(threads)
    defer { setComputeThreads(1) }
    let rows = 4000, channels = 37, count = rows * channels
    var rng = SplitMix64(seed: UInt64(40 + threads))
    let out = rng.array(count), g = rng.array(count), x = rng.array(count), mean = rng.array(channels)
    var alone = [Float](repeating: .nan, count: count), withBN = alone
    let sums = reluBackwardWithSums(rows: rows, channels: channels, output: out, gradOutput: g, gradInput: &alone)
    let reference = x.withUnsafeBufferPointer { xp in mean.withUnsafeBufferPointer { mp in
        reluBackwardWithBatchNormSums(rows: rows, channels: channels, output: out, gradOutput: g, gradInput: &withBN,
                                      first: (xp.baseAddress!, mp.baseAddress!))
    } }
    #expect(alone == withBN)
    #expect(sums == reference[0].sumG)
    // And they are the masked gradient's column sums (float sums within blocks).
    let direct = columnSums(rows: rows, channels: channels, alone)
    let size = columnSums(rows: rows, channels: channels, alone.map { abs($0) })
    #expect((0..<channels).allSatisfy { abs(sums[$0] - direct[$0]) <= 1e-6 * size[$0] })
}

@Test("conv 1x1 + BatchNorm backward folded over no rows leaves the gradients as they were")
func pointwiseConvBatchNormFoldedNoRows() {
    var rng = SplitMix64(seed: 8)
    let cin = 16, cout = 64
    let w = rng.array(cout * cin), gamma = rng.array(cout), mean = rng.array(cout), invStd = rng.array(cout).map { abs($0) + 1 }
    let start: Gradients = ([], rng.array(cout * cin), rng.array(cout), rng.array(cout))
    let empty = [Float](repeating: 0, count: 1)
    let after = folded(rows: 0, cin: cin, cout: cout, x: empty, w: w, g: empty, gamma: gamma, mean: mean, invStd: invStd,
                       start: start)
    #expect(after.w == start.w && after.gamma == start.gamma && after.beta == start.beta)
}
