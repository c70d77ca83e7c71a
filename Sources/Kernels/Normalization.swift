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
    precondition(rows > 1, "batchNormForwardTraining: needs more than one value per channel, got rows = \(rows)")
    // Two passes (mean, then centred squares), accumulated in Double.
    var mean = [Double](repeating: 0, count: channels)
    var variance = [Double](repeating: 0, count: channels)
    mean.withUnsafeMutableBufferPointer { mean in
        variance.withUnsafeMutableBufferPointer { variance in
            columnSums(rows: rows, channels: channels, input, into: mean.baseAddress!)
            let invRows = 1 / Double(rows)
            for c in 0..<channels { mean[c] *= invRows }
            centredSquareSums(rows: rows, channels: channels, input, mean: mean.baseAddress!, into: variance.baseAddress!)
            let unbiasing = Double(rows) / Double(rows - 1)
            let m = Double(momentum)
            for c in 0..<channels {
                let biased = variance[c] * invRows
                saveMean[c] = Float(mean[c])
                saveInvStd[c] = Float(1 / (biased + Double(eps)).squareRoot())
                runningMean[c] = Float((1 - m) * Double(runningMean[c]) + m * mean[c])
                runningVar[c] = Float((1 - m) * Double(runningVar[c]) + m * biased * unbiasing)
            }
        }
    }
    normalise(rows: rows, channels: channels, input: input, mean: UnsafePointer(saveMean),
              invStd: UnsafePointer(saveInvStd), gamma: gamma, beta: beta, output: output)
}

// MARK: Forward (inference)

/// Inference mode: normalise with the running statistics.
public func batchNormForwardInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>
) {
    let invStd = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { invStd.deallocate() }
    for c in 0..<channels { invStd[c] = Float(1 / (Double(runningVar[c]) + Double(eps)).squareRoot()) }
    normalise(rows: rows, channels: channels, input: input, mean: runningMean, invStd: UnsafePointer(invStd),
              gamma: gamma, beta: beta, output: output)
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
    // sumG[c] = sum_r g, sumGX[c] = sum_r g * xhat with xhat = (x - mean) * invStd.
    var sumG = [Double](repeating: 0, count: channels)
    var sumGX = [Double](repeating: 0, count: channels)
    sumG.withUnsafeMutableBufferPointer { sumG in
        sumGX.withUnsafeMutableBufferPointer { sumGX in
            columnSums(rows: rows, channels: channels, gradOutput, into: sumG.baseAddress!)
            gradientMoments(rows: rows, channels: channels, input: input, mean: saveMean,
                            gradOutput: gradOutput, into: sumGX.baseAddress!)
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
            for r in 0..<rows {
                let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
                for c in 0..<channels { gi[c] = a[c] * g[c] + b[c] * x[c] + d[c] }
            }
        }
    }
}

// MARK: Helpers

/// output = (x - mean) * invStd * gamma + beta, folded to x * scale + shift.
private func normalise(rows: Int, channels: Int, input: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                       invStd: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                       output: UnsafeMutablePointer<Float>) {
    let scale = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { scale.deallocate() }
    let shift = scale + channels
    for c in 0..<channels {
        let s = Double(invStd[c]) * Double(gamma[c])
        scale[c] = Float(s)
        shift[c] = Float(Double(beta[c]) - Double(mean[c]) * s)
    }
    for r in 0..<rows {
        let x = input + r &* channels, y = output + r &* channels
        for c in 0..<channels { y[c] = x[c] * scale[c] + shift[c] }
    }
}

/// Rows are summed in Float over short blocks (vectorised), blocks gathered in Double.
private let statisticsBlock = 64

/// sums[c] = sum over rows of x[r, c] (overwritten).
private func columnSums(rows: Int, channels: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>) {
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { partial.deallocate() }
    sums.update(repeating: 0, count: channels)
    var start = 0
    while start < rows {
        let end = min(rows, start + statisticsBlock)
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            for c in 0..<channels { partial[c] += row[c] }
        }
        for c in 0..<channels { sums[c] += Double(partial[c]) }
        start = end
    }
}

/// sums[c] = sum over rows of (x[r, c] - mean[c])^2 (overwritten).
private func centredSquareSums(rows: Int, channels: Int, _ x: UnsafePointer<Float>, mean: UnsafePointer<Double>,
                               into sums: UnsafeMutablePointer<Double>) {
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { partial.deallocate() }
    let meanF = partial + channels
    for c in 0..<channels { meanF[c] = Float(mean[c]) }
    sums.update(repeating: 0, count: channels)
    var start = 0
    while start < rows {
        let end = min(rows, start + statisticsBlock)
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            for c in 0..<channels {
                let d = row[c] - meanF[c]
                partial[c] += d * d
            }
        }
        for c in 0..<channels { sums[c] += Double(partial[c]) }
        start = end
    }
}

/// sums[c] = sum over rows of g[r, c] * (x[r, c] - mean[c]) (overwritten).
private func gradientMoments(rows: Int, channels: Int, input: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                             gradOutput: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Double>) {
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { partial.deallocate() }
    sums.update(repeating: 0, count: channels)
    var start = 0
    while start < rows {
        let end = min(rows, start + statisticsBlock)
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let x = input + r &* channels, g = gradOutput + r &* channels
            for c in 0..<channels { partial[c] += g[c] * (x[c] - mean[c]) }
        }
        for c in 0..<channels { sums[c] += Double(partial[c]) }
        start = end
    }
}
