// Backward of a 1x1 convolution followed by a training-mode BatchNorm, y = BN(z) with
// z = x · Wᵀ, from the convolution's input x alone: z (the BatchNorm's input) is neither
// kept nor rebuilt, and BatchNorm's input gradient dz is never written.
//
// BatchNorm's backward is dz = a ∘ g + b ∘ z + d per channel (a, b, d from the gradient
// sums, as in `batchNormBackward`). Substituting z = x · Wᵀ everywhere z appears:
//   Σ_r g (z - mean) = Σ_j W ∘ G - mean ∘ Σ_r g          with G = gᵀ · x   [cout, cin]
//   dW += dzᵀ · x    = diag(a) G + diag(b) W S + d ⊗ s   with S = xᵀ · x   [cin, cin], s = Σ_r x
//   dx  = dz · W     = g · diag(a) W + x · Wᵀ diag(b) W + 1 ⊗ (dᵀ W)
// So the work over rows is G (the weight gradient's own GEMM), S (a quarter of it for a
// bottleneck's 4x expansion), and an input-gradient GEMM with a second, cin-deep term,
// instead of rebuilding z (a cout-wide GEMM), reading it twice and writing dz.
// A bottleneck whose conv3 output is not kept (`Bottleneck.rebuildsConv3`) runs this.
// Not bit for bit the unfolded result: the same quantities summed in another order
// (the tests compare within float rounding).

/// Gradients of y = BN(x · Wᵀ) (training statistics `saveMean`/`saveInvStd` of z = x · Wᵀ,
/// no conv bias) from `gradOutput` = dL/dy [rows, cout] and its per-channel sums `sumG`
/// (this replica's rows; formed by the pass that wrote gradOutput, e.g. `reluBackwardWithSums`).
/// `input` x is [rows, cin], `weight` W is [cout, cin]. gradGamma, gradBeta and gradWeight
/// accumulate; gradInput = dL/dx [rows, cin] is overwritten. With a `reducer` (synchronised
/// BatchNorm) the batch's sums are used for the input gradient, as `batchNormBackward` does.
public func pointwiseConvBatchNormBackward(
    rows: Int, inChannels cin: Int, outChannels cout: Int,
    input x: UnsafePointer<Float>, weight w: UnsafePointer<Float>,
    gradOutput g: UnsafePointer<Float>, sumG: [Double],
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    gradWeight: UnsafeMutablePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    reducer: BatchNormStatisticsReducer? = nil
) {
    require(rows >= 0 && cin > 0 && cout > 0, "pointwiseConvBatchNormBackward: invalid shape \(rows) x \(cin) -> \(cout)")
    require(sumG.count == cout, "pointwiseConvBatchNormBackward: sums for \(sumG.count) channels, expected \(cout)")
    // No rows and no other replica: nothing to add (and no batch to average over).
    if rows == 0 && reducer == nil { return }
    let wide = cout &* cin, square = cin &* cin
    // G, W·S and diag(b)·W ([cout, cin] each), S and M ([cin, cin]), s, and the row dᵀW.
    let work = UnsafeMutablePointer<Float>.allocate(capacity: 3 &* wide &+ 2 &* square &+ 2 &* cin)
    defer { work.deallocate() }
    let G = work, WS = G + wide, scaledW = WS + wide, S = scaledW + wide, M = S + square, s = M + square, dTW = s + cin
    // The sums over rows: G = gᵀ x, S = xᵀ x, s = Σ_r x.
    sgemm(transA: true, transB: false, m: cout, n: cin, k: rows, alpha: 1, a: g, lda: cout, b: x, ldb: cin,
          beta: 0, c: G, ldc: cin)
    sgemm(transA: true, transB: false, m: cin, n: cin, k: rows, alpha: 1, a: x, lda: cin, b: x, ldb: cin,
          beta: 0, c: S, ldc: cin)
    s.update(repeating: 0, count: cin)
    accumulateColumnSums(rows: rows, columns: cin, x, into: s)

    // BatchNorm's sums, [rows, sumG, sumGX] as `batchNormBackward` forms them, with
    // Σ_r g (z - mean) = Σ_j W G - mean Σ_r g; then its coefficients: dz = a g + b z + d.
    var all = [Double](repeating: 0, count: 1 &+ 2 &* cout)
    all.withUnsafeMutableBufferPointer { all in
        let sumGAll = all.baseAddress! + 1, sumGX = sumGAll + cout
        for c in 0..<cout {
            var wg = 0.0
            for j in 0..<cin { wg += Double(w[c &* cin &+ j]) * Double(G[c &* cin &+ j]) }
            sumGAll[c] = sumG[c]
            sumGX[c] = wg - Double(saveMean[c]) * sumG[c]
        }
        let coefficients = UnsafeMutablePointer<Float>.allocate(capacity: 3 &* cout)
        defer { coefficients.deallocate() }
        let a = coefficients, b = a + cout, d = b + cout
        batchNormInputGradientCoefficients(rows: rows, channels: cout, sums: all, gamma: gamma, saveMean: saveMean,
                                           saveInvStd: saveInvStd, gradGamma: gradGamma, gradBeta: gradBeta,
                                           reducer: reducer, into: coefficients)
        // dW += diag(a) G + diag(b) (W S) + d ⊗ s.
        sgemm(transA: false, transB: false, m: cout, n: cin, k: cin, alpha: 1, a: w, lda: cin, b: S, ldb: cin,
              beta: 0, c: WS, ldc: cin)
        for c in 0..<cout {
            let row = c &* cin
            for j in 0..<cin { gradWeight[row &+ j] += a[c] * G[row &+ j] + b[c] * WS[row &+ j] + d[c] * s[j] }
        }
        // dx = g (diag(a) W) + x (Wᵀ diag(b) W) + 1 ⊗ (dᵀ W): diag(a) W goes into G's
        // space (G is used up), M = Wᵀ diag(b) W.
        let aW = G
        for c in 0..<cout {
            let row = c &* cin
            for j in 0..<cin {
                aW[row &+ j] = a[c] * w[row &+ j]
                scaledW[row &+ j] = b[c] * w[row &+ j]
            }
        }
        sgemm(transA: true, transB: false, m: cin, n: cin, k: cout, alpha: 1, a: w, lda: cin, b: scaledW, ldb: cin,
              beta: 0, c: M, ldc: cin)
        for j in 0..<cin {
            var e = 0.0
            for c in 0..<cout { e += Double(d[c]) * Double(w[c &* cin &+ j]) }
            dTW[j] = Float(e)
        }
        parallelRanges(rows, workPerItem: cin, align: 1) { rowRange in
            for r in rowRange { (gradInput + r &* cin).update(from: dTW, count: cin) }
        }
        sgemm(transA: false, transB: false, m: rows, n: cin, k: cout, alpha: 1, a: g, lda: cout, b: aW, ldb: cin,
              beta: 1, c: gradInput, ldc: cin)
        sgemm(transA: false, transB: false, m: rows, n: cin, k: cin, alpha: 1, a: x, lda: cin, b: M, ldb: cin,
              beta: 1, c: gradInput, ldc: cin)
    }
}
