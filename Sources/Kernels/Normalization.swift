// BatchNorm over a [rows, channels] matrix. Rows are walked in order with the
// channel loop innermost, so every pass is a contiguous, vectorisable sweep.

// MARK: Forward (training)

/// BatchNorm over a [rows, channels] matrix (BatchNorm2d with rows = N*H*W in
/// NHWC, or BatchNorm1d with rows = N). Training mode: batch statistics with the
/// biased variance to normalise; running_mean/var updated with `momentum` using
/// the unbiased variance (rows / (rows - 1)). Saves mean and 1/sqrt(var+eps) for
/// backward into `saveMean`/`saveInvStd` [channels].
public func batchNormForwardTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: false)
}

/// `batchNormForwardTraining` followed by ReLU in the same output pass:
/// output = max(BN(input), 0). Pair with `batchNormReLUBackward`, which needs only
/// this (post-ReLU) output, so no pre-ReLU buffer has to be kept.
public func batchNormReLUForwardTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: true)
}

private func batchNormTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float, relu: Bool
) {
    require(rows > 1, "batchNormForwardTraining: needs more than one value per channel, got rows = \(rows)")
    var mean = [Double](repeating: 0, count: channels)
    var variance = [Double](repeating: 0, count: channels)
    mean.withUnsafeMutableBufferPointer { mean in
        variance.withUnsafeMutableBufferPointer { variance in
            meanAndBiasedVariance(rows: rows, channels: channels, input,
                                  mean: mean.baseAddress!, variance: variance.baseAddress!)
            let unbiasing = Double(rows) / Double(rows - 1)
            let m = Double(momentum)
            for c in 0..<channels {
                let biased = variance[c]
                saveMean[c] = Float(mean[c])
                saveInvStd[c] = Float(1 / (biased + Double(eps)).squareRoot())
                runningMean[c] = Float((1 - m) * Double(runningMean[c]) + m * mean[c])
                runningVar[c] = Float((1 - m) * Double(runningVar[c]) + m * biased * unbiasing)
            }
        }
    }
    normalise(rows: rows, channels: channels, input: input, mean: UnsafePointer(saveMean),
              invStd: UnsafePointer(saveInvStd), gamma: gamma, beta: beta, output: output, relu: relu)
}

// MARK: Forward (inference)

/// Inference mode: normalise with the running statistics.
public func batchNormForwardInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>
) {
    batchNormInference(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta,
                       runningMean: runningMean, runningVar: runningVar, eps: eps, output: output, relu: false)
}

/// `batchNormForwardInference` followed by ReLU in the same pass.
public func batchNormReLUForwardInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>
) {
    batchNormInference(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta,
                       runningMean: runningMean, runningVar: runningVar, eps: eps, output: output, relu: true)
}

private func batchNormInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>, relu: Bool
) {
    let invStd = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { invStd.deallocate() }
    for c in 0..<channels { invStd[c] = Float(1 / (Double(runningVar[c]) + Double(eps)).squareRoot()) }
    normalise(rows: rows, channels: channels, input: input, mean: runningMean, invStd: UnsafePointer(invStd),
              gamma: gamma, beta: beta, output: output, relu: relu)
}

// MARK: Backward

/// Backward of the training-mode forward. gradGamma/gradBeta accumulate,
/// gradInput is overwritten.
public func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>
) {
    batchNormBackward(rows: rows, channels: channels, input: input, reluOutput: nil, gamma: gamma,
                      saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                      gradGamma: gradGamma, gradBeta: gradBeta)
}

/// Backward of `batchNormReLUForwardTraining`: the gradient is masked where
/// `output` (the forward's post-ReLU output) is not positive, then goes through
/// BatchNorm. gradGamma/gradBeta accumulate, gradInput is overwritten.
public func batchNormReLUBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>
) {
    batchNormBackward(rows: rows, channels: channels, input: input, reluOutput: output, gamma: gamma,
                      saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                      gradGamma: gradGamma, gradBeta: gradBeta)
}

/// With `reluOutput`, g is read as (reluOutput > 0 ? g : 0) everywhere.
private func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>, reluOutput: UnsafePointer<Float>?,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>
) {
    // sumG[c] = sum_r g, sumGX[c] = sum_r g * xhat with xhat = (x - mean) * invStd.
    var sumG = [Double](repeating: 0, count: channels)
    var sumGX = [Double](repeating: 0, count: channels)
    sumG.withUnsafeMutableBufferPointer { sumG in
        sumGX.withUnsafeMutableBufferPointer { sumGX in
            gradientSums(rows: rows, channels: channels, input: input, reluOutput: reluOutput, mean: saveMean,
                         gradOutput: gradOutput, sumG: sumG.baseAddress!, sumGX: sumGX.baseAddress!)
            for c in 0..<channels {
                sumGX[c] *= Double(saveInvStd[c])
                gradBeta[c] += Float(sumG[c])
                gradGamma[c] += Float(sumGX[c])
            }
            // gradInput = gamma * invStd * (g - sumG / rows - xhat * sumGX / rows)
            //           = a[c] * g + b[c] * x + d[c]
            let a = UnsafeMutablePointer<Float>.allocate(capacity: 3 * channels)
            defer { a.deallocate() }
            let b = a + channels, d = a + 2 * channels
            let invRows = 1 / Double(rows)
            for c in 0..<channels {
                let k = Double(gamma[c]) * Double(saveInvStd[c])
                let meanG = sumG[c] * invRows
                let slope = sumGX[c] * invRows * Double(saveInvStd[c])  // multiplies (x - mean)
                a[c] = Float(k)
                b[c] = Float(-k * slope)
                d[c] = Float(k * (slope * Double(saveMean[c]) - meanG))
            }
            parallelRanges(rows, workPerItem: channels, align: 1) { rowRange in
                if let reluOutput {
                    for r in rowRange {
                        let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
                        let y = reluOutput + r &* channels
                        for c in 0..<channels {
                            let gv = g[c], masked: Float = y[c] > 0 ? gv : 0
                            gi[c] = a[c] * masked + b[c] * x[c] + d[c]
                        }
                    }
                } else {
                    for r in rowRange {
                        let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
                        for c in 0..<channels { gi[c] = a[c] * g[c] + b[c] * x[c] + d[c] }
                    }
                }
            }
        }
    }
}

// MARK: Helpers

/// output = (x - mean) * invStd * gamma + beta, folded to x * scale + shift.
private func normalise(rows: Int, channels: Int, input: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                       invStd: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                       output: UnsafeMutablePointer<Float>, relu: Bool) {
    let scale = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { scale.deallocate() }
    let shift = scale + channels
    for c in 0..<channels {
        let s = Double(invStd[c]) * Double(gamma[c])
        scale[c] = Float(s)
        shift[c] = Float(Double(beta[c]) - Double(mean[c]) * s)
    }
    parallelRanges(rows, workPerItem: channels, align: 1) { rowRange in
        if relu {
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels
                for c in 0..<channels { y[c] = max(x[c] * scale[c] + shift[c], 0) }
            }
        } else {
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels
                for c in 0..<channels { y[c] = x[c] * scale[c] + shift[c] }
            }
        }
    }
}

/// Rows per statistics block: a block of about 64 KiB stays in cache for its second
/// sweep; within a block sums are Float (vectorised), across blocks Double.
private func blockRows(channels: Int) -> Int { max(4, 16_384 / max(1, channels)) }

/// Per-channel mean and biased variance in one read of the input: each block is
/// reduced with the two-pass formula while it is in cache, and blocks are merged
/// in Double with Chan et al.'s pairwise update, so no E[x^2] - E[x]^2 cancellation.
/// Blocks are shared among the compute threads in contiguous runs; each run is merged
/// on its own, then the runs in order, so the result depends only on the thread count.
private func meanAndBiasedVariance(rows: Int, channels: Int, _ x: UnsafePointer<Float>,
                                   mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>) {
    let block = blockRows(channels: channels)
    let blocks = (rows + block - 1) / block
    let parts = computeThreads
    // Per part: count, then mean[channels] and M2[channels].
    let stride = 1 + 2 * channels
    let perPart = UnsafeMutablePointer<Double>.allocate(capacity: parts * stride)
    defer { perPart.deallocate() }
    perPart.update(repeating: 0, count: parts * stride)
    forEachPart(work: rows &* channels) { part, ranParts in
        let blockRange = partRange(blocks, part: part, parts: ranParts)
        let rowRange = min(rows, blockRange.lowerBound * block)..<min(rows, blockRange.upperBound * block)
        let out = perPart + part &* stride
        out[0] = Double(rowRange.count)
        blockMoments(rowRange, block: block, channels: channels, x, mean: out + 1, m2: out + 1 + channels)
    }
    mean.update(repeating: 0, count: channels)
    variance.update(repeating: 0, count: channels)  // holds M2 until the end
    var merged = 0.0
    for part in 0..<parts {
        let p = perPart + part &* stride
        let nB = p[0]
        guard nB > 0 else { continue }
        if merged == 0 {  // the first run with rows: taken as it is
            mean.update(from: p + 1, count: channels)
            variance.update(from: p + 1 + channels, count: channels)
            merged = nB
            continue
        }
        let nA = merged, n = nA + nB
        for c in 0..<channels {
            let delta = p[1 &+ c] - mean[c]
            mean[c] += delta * nB / n
            variance[c] += p[1 &+ channels &+ c] + delta * delta * nA * nB / n
        }
        merged = n
    }
    let invRows = 1 / Double(rows)
    for c in 0..<channels { variance[c] *= invRows }
}

/// Mean and M2 (sum of squared deviations) per channel of the rows `rowRange`, block by block
/// (Float within a block, Chan's merge in Double across blocks). Overwrites mean and m2.
private func blockMoments(_ rowRange: Range<Int>, block: Int, channels: Int, _ x: UnsafePointer<Float>,
                          mean: UnsafeMutablePointer<Double>, m2: UnsafeMutablePointer<Double>) {
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { partial.deallocate() }
    let blockMean = partial + channels
    mean.update(repeating: 0, count: channels)
    m2.update(repeating: 0, count: channels)
    var start = rowRange.lowerBound
    while start < rowRange.upperBound {
        let end = min(rowRange.upperBound, start + block)
        let count = end - start
        // Block mean.
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            for c in 0..<channels { partial[c] += row[c] }
        }
        let invCount = 1 / Float(count)
        for c in 0..<channels { blockMean[c] = partial[c] * invCount }
        // Block M2 about its own mean (the block is still in cache).
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            for c in 0..<channels {
                let d = row[c] - blockMean[c]
                partial[c] += d * d
            }
        }
        // Merge (Chan et al.): M2 += M2_b + delta^2 * n_a * n_b / n.
        let nA = Double(start - rowRange.lowerBound), nB = Double(count), n = nA + nB
        for c in 0..<channels {
            let delta = Double(blockMean[c]) - mean[c]
            mean[c] += delta * nB / n
            m2[c] += Double(partial[c]) + delta * delta * nA * nB / n
        }
        start = end
    }
}

/// sumG[c] = sum_r g[r, c] and sumGX[c] = sum_r g[r, c] * (x[r, c] - mean[c]), in one read
/// (g masked by reluOutput > 0 when given). Blocks are shared among the compute threads in
/// contiguous runs, each summed in Double, then the runs added in order.
private func gradientSums(rows: Int, channels: Int, input: UnsafePointer<Float>, reluOutput: UnsafePointer<Float>?,
                          mean: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          sumG: UnsafeMutablePointer<Double>, sumGX: UnsafeMutablePointer<Double>) {
    let block = blockRows(channels: channels)
    let blocks = (rows + block - 1) / block
    let parts = computeThreads
    let perPart = UnsafeMutablePointer<Double>.allocate(capacity: parts * 2 * channels)
    defer { perPart.deallocate() }
    perPart.update(repeating: 0, count: parts * 2 * channels)
    forEachPart(work: rows &* channels) { part, ranParts in
        let blockRange = partRange(blocks, part: part, parts: ranParts)
        let rowRange = min(rows, blockRange.lowerBound * block)..<min(rows, blockRange.upperBound * block)
        let outG = perPart + part &* 2 &* channels, outGX = outG + channels
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
        defer { partial.deallocate() }
        let partialX = partial + channels
        var start = rowRange.lowerBound
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: 2 * channels)
            if let reluOutput {
                for r in start..<end {
                    let x = input + r &* channels, g = gradOutput + r &* channels, y = reluOutput + r &* channels
                    for c in 0..<channels {
                        let gv = g[c], masked: Float = y[c] > 0 ? gv : 0
                        partial[c] += masked
                        partialX[c] += masked * (x[c] - mean[c])
                    }
                }
            } else {
                for r in start..<end {
                    let x = input + r &* channels, g = gradOutput + r &* channels
                    for c in 0..<channels {
                        let gv = g[c]
                        partial[c] += gv
                        partialX[c] += gv * (x[c] - mean[c])
                    }
                }
            }
            for c in 0..<channels {
                outG[c] += Double(partial[c])
                outGX[c] += Double(partialX[c])
            }
            start = end
        }
    }
    sumG.update(repeating: 0, count: channels)
    sumGX.update(repeating: 0, count: channels)
    for part in 0..<parts {
        let g = perPart + part &* 2 &* channels, gx = g + channels
        for c in 0..<channels {
            sumG[c] += g[c]
            sumGX[c] += gx[c]
        }
    }
}
