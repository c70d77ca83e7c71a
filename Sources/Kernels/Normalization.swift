// BatchNorm over a [rows, channels] matrix. Rows are walked in order with the
// channel loop innermost, so every pass is a contiguous, vectorisable sweep. The
// passes that sum over rows (batch statistics, gradient sums) are in BatchNormSums.swift.

// MARK: Synchronised statistics

/// Sums per-channel statistics over the replicas that each hold a shard of one
/// batch (synchronised BatchNorm, SPEC section 6). Implemented above the kernels
/// (over MPI by the trainer), so this target stays free of MPI.
public protocol BatchNormStatisticsReducer: AnyObject {
    /// Replaces `values` by their element-wise sum over every replica; every
    /// replica passes the same count and receives the same result.
    func sumOverReplicas(_ values: UnsafeMutableBufferPointer<Double>)
}

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
    momentum: Float, eps: Float, reducer: BatchNormStatisticsReducer? = nil
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: false, reducer: reducer)
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
    momentum: Float, eps: Float, reducer: BatchNormStatisticsReducer? = nil
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: true, reducer: reducer)
}

private func batchNormTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float, relu: Bool, residual: Residual? = nil, reducer: BatchNormStatisticsReducer?
) {
    batchNormStatisticsTraining(rows: rows, channels: channels, input: input, saveMean: saveMean, saveInvStd: saveInvStd,
                                runningMean: runningMean, runningVar: runningVar, momentum: momentum, eps: eps,
                                reducer: reducer)
    normalise(rows: rows, channels: channels, input: input, mean: UnsafePointer(saveMean),
              invStd: UnsafePointer(saveInvStd), gamma: gamma, beta: beta, output: output, relu: relu,
              residual: residual)
}

/// The statistics half of `batchNormForwardTraining`, without an output pass: saves the
/// batch mean and 1/sqrt(var+eps) into `saveMean`/`saveInvStd` and updates the running
/// statistics, as the full forward does. For a BatchNorm whose output is only ever
/// added to another one's (a projection shortcut): `batchNormAddForwardTraining(
/// residualInput:...)` then normalises it inside the sum, so it is never written.
public func batchNormStatisticsTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float, reducer: BatchNormStatisticsReducer? = nil
) {
    require(rows > 1 || reducer != nil, "batchNormForwardTraining: needs more than one value per channel, got rows = \(rows)")
    var mean = [Double](repeating: 0, count: channels)
    var variance = [Double](repeating: 0, count: channels)
    var totalRows = Double(rows)
    mean.withUnsafeMutableBufferPointer { mean in
        variance.withUnsafeMutableBufferPointer { variance in
            meanAndBiasedVariance(rows: rows, channels: channels, input,
                                  mean: mean.baseAddress!, variance: variance.baseAddress!)
            if let reducer {
                totalRows = globalMoments(rows: rows, channels: channels, mean: mean, variance: variance, reducer)
            }
            require(totalRows > 1, "batchNormForwardTraining: needs more than one value per channel, got rows = \(totalRows)")
            let unbiasing = totalRows / (totalRows - 1)
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
}

/// What `normalise` adds before its ReLU: a map, or another BatchNorm's output formed
/// on the fly from its input and statistics (`residualInput * scale + shift`, the float
/// operations that BatchNorm's own output pass would have stored).
private enum Residual {
    case map(UnsafePointer<Float>)
    case normalised(input: UnsafePointer<Float>, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>)
}

/// BN(input) + residual, then ReLU when `relu`, in BatchNorm's output pass: a
/// residual block's last BatchNorm, shortcut add and activation in one sweep instead
/// of three. Bit for bit what `batchNormForwardTraining`, an add and a ReLU give
/// (the same float operations in the same order). `residual` is [rows, channels].
public func batchNormAddForwardTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>, residual: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float, relu: Bool, reducer: BatchNormStatisticsReducer? = nil
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: relu, residual: .map(residual), reducer: reducer)
}

/// `batchNormAddForwardTraining` with the residual given as a second BatchNorm's input and
/// the statistics `batchNormStatisticsTraining` saved for it (`residualMean`,
/// `residualInvStd`) with its `residualGamma`/`residualBeta`: output = BN(input) +
/// BN_r(residualInput), then ReLU when `relu`. Bit for bit what writing BN_r's output
/// with its own forward and adding it gives, without writing or reading that map.
public func batchNormAddForwardTraining(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    residualInput: UnsafePointer<Float>, residualMean: UnsafePointer<Float>, residualInvStd: UnsafePointer<Float>,
    residualGamma: UnsafePointer<Float>, residualBeta: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>,
    saveMean: UnsafeMutablePointer<Float>, saveInvStd: UnsafeMutablePointer<Float>,
    runningMean: UnsafeMutablePointer<Float>, runningVar: UnsafeMutablePointer<Float>,
    momentum: Float, eps: Float, relu: Bool, reducer: BatchNormStatisticsReducer? = nil
) {
    batchNormTraining(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta, output: output,
                      saveMean: saveMean, saveInvStd: saveInvStd, runningMean: runningMean, runningVar: runningVar,
                      momentum: momentum, eps: eps, relu: relu,
                      residual: .normalised(input: residualInput, mean: residualMean, invStd: residualInvStd,
                                            gamma: residualGamma, beta: residualBeta),
                      reducer: reducer)
}

/// Inference form of `batchNormAddForwardTraining` (running statistics).
public func batchNormAddForwardInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>, residual: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>, relu: Bool
) {
    batchNormInference(rows: rows, channels: channels, input: input, gamma: gamma, beta: beta,
                       runningMean: runningMean, runningVar: runningVar, eps: eps, output: output, relu: relu,
                       residual: .map(residual))
}

/// relu(BN(input)) again with the statistics a training forward saved (`saveMean`,
/// `saveInvStd`): that forward's output bit for bit, without computing (or, when
/// synchronised, reducing) statistics again. For activations backward rebuilds.
public func batchNormReLURecompute(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>
) {
    normalise(rows: rows, channels: channels, input: input, mean: saveMean, invStd: saveInvStd,
              gamma: gamma, beta: beta, output: output, relu: true)
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
    output: UnsafeMutablePointer<Float>, relu: Bool, residual: Residual? = nil
) {
    let invStd = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { invStd.deallocate() }
    for c in 0..<channels { invStd[c] = Float(1 / (Double(runningVar[c]) + Double(eps)).squareRoot()) }
    normalise(rows: rows, channels: channels, input: input, mean: runningMean, invStd: UnsafePointer(invStd),
              gamma: gamma, beta: beta, output: output, relu: relu, residual: residual)
}

// MARK: Backward

/// Backward of the training-mode forward. gradGamma/gradBeta accumulate,
/// gradInput is overwritten.
public func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    reducer: BatchNormStatisticsReducer? = nil
) {
    batchNormBackward(rows: rows, channels: channels, input: input, reluFold: nil, gamma: gamma,
                      saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                      gradGamma: gradGamma, gradBeta: gradBeta, reducer: reducer)
}

/// Per-channel gradient sums of one BatchNorm backward, formed by a pass that already
/// reads its output gradient (`reluBackwardWithBatchNormSums`): sum_r g and
/// sum_r g * (x - mean), in Double, this replica's rows only.
public struct BatchNormGradientSums: Sendable {
    public var sumG: [Double]
    public var sumGX: [Double]
}

/// `batchNormBackward` with the gradient sums already formed (`reluBackwardWithBatchNormSums`),
/// so only the input-gradient pass reads the maps; the same result bit for bit.
public func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    sums: BatchNormGradientSums, reducer: BatchNormStatisticsReducer? = nil
) {
    require(sums.sumG.count == channels && sums.sumGX.count == channels,
            "batchNormBackward: sums for \(sums.sumG.count) channels, expected \(channels)")
    batchNormBackward(rows: rows, channels: channels, input: input, reluFold: nil, gamma: gamma,
                      saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                      gradGamma: gradGamma, gradBeta: gradBeta, precomputed: sums, reducer: reducer)
}

/// Backward of `batchNormReLUForwardTraining`: the gradient is masked where the
/// forward's post-ReLU output was not positive, then goes through BatchNorm.
/// The mask is rebuilt from `input` with the saved statistics, `gamma` and `beta`
/// (the forward's `x * scale + shift > 0`, the same float operations: bit for bit
/// its output's sign), so the output itself is not read again.
/// gradGamma/gradBeta accumulate, gradInput is overwritten.
public func batchNormReLUBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    reducer: BatchNormStatisticsReducer? = nil
) {
    let fold = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { fold.deallocate() }
    foldScaleShift(channels: channels, mean: saveMean, invStd: saveInvStd, gamma: gamma, beta: beta, into: fold)
    batchNormBackward(rows: rows, channels: channels, input: input, reluFold: UnsafePointer(fold), gamma: gamma,
                      saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                      gradGamma: gradGamma, gradBeta: gradBeta, reducer: reducer)
}

/// With `reluFold` ([scale, shift], as the forward's `normalise` folds them), g is
/// read as (x * scale + shift > 0 ? g : 0) everywhere: the forward's ReLU mask.
private func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>, reluFold: UnsafePointer<Float>?,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    precomputed: BatchNormGradientSums? = nil, reducer: BatchNormStatisticsReducer?
) {
    // sumG[c] = sum_r g, sumGX[c] = sum_r g * (x - mean) (scaled to xhat's by invStd in
    // `batchNormInputGradientCoefficients`). Synchronised: [rows, sumG, sumGX] in one
    // buffer, for one allreduce.
    var sums = [Double](repeating: 0, count: 1 + 2 * channels)
    sums.withUnsafeMutableBufferPointer { all in
        let sumG = all.baseAddress! + 1, sumGX = sumG + channels
        if let precomputed {
            sumG.update(from: precomputed.sumG, count: channels)
            sumGX.update(from: precomputed.sumGX, count: channels)
        } else {
            gradientSums(rows: rows, channels: channels, input: input, reluFold: reluFold, mean: saveMean,
                         gradOutput: gradOutput, sumG: sumG, sumGX: sumGX)
        }
        let a = UnsafeMutablePointer<Float>.allocate(capacity: 3 * channels)
        defer { a.deallocate() }
        let b = a + channels, d = a + 2 * channels
        batchNormInputGradientCoefficients(rows: rows, channels: channels, sums: all, gamma: gamma, saveMean: saveMean,
                                           saveInvStd: saveInvStd, gradGamma: gradGamma, gradBeta: gradBeta,
                                           reducer: reducer, into: a)
        parallelRanges(rows, workPerItem: channels, align: 1) { rowRange in
            if let reluFold {
                let scale = reluFold, shift = reluFold + channels
                for r in rowRange {
                    let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
                    for c in 0..<channels {
                        let gv = g[c], xv = x[c], masked: Float = xv * scale[c] + shift[c] > 0 ? gv : 0
                        gi[c] = a[c] * masked + b[c] * xv + d[c]
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

/// What every BatchNorm backward does once its sums are formed. `sums` is this replica's
/// [rows, sumG, sumGX] (sumGX = sum_r g * (x - mean), not yet scaled): sumGX is scaled by
/// invStd, gamma and beta take this shard's sums (the gradient allreduce adds the shards),
/// the sums go over the replicas (the input gradient needs the whole batch's), and
/// `coefficients` [a, b, d] (3 x channels) receive gradInput = a * g + b * x + d, from
/// gamma * invStd * (g - sumG / rows - xhat * sumGX / rows).
func batchNormInputGradientCoefficients(
    rows: Int, channels: Int, sums all: UnsafeMutableBufferPointer<Double>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>,
    reducer: BatchNormStatisticsReducer?, into coefficients: UnsafeMutablePointer<Float>
) {
    let sumG = all.baseAddress! + 1, sumGX = sumG + channels
    for c in 0..<channels {
        sumGX[c] *= Double(saveInvStd[c])
        gradBeta[c] += Float(sumG[c])
        gradGamma[c] += Float(sumGX[c])
    }
    all[0] = Double(rows)
    if let reducer { reducer.sumOverReplicas(all) }
    let a = coefficients, b = a + channels, d = a + 2 * channels
    let invRows = 1 / all[0]
    for c in 0..<channels {
        let k = Double(gamma[c]) * Double(saveInvStd[c])
        let meanG = sumG[c] * invRows
        let slope = sumGX[c] * invRows * Double(saveInvStd[c])  // multiplies (x - mean)
        a[c] = Float(k)
        b[c] = Float(-k * slope)
        d[c] = Float(k * (slope * Double(saveMean[c]) - meanG))
    }
}

// MARK: Helpers

/// output = (x - mean) * invStd * gamma + beta, folded to x * scale + shift
/// (+ residual, then ReLU, when given).
private func normalise(rows: Int, channels: Int, input: UnsafePointer<Float>, mean: UnsafePointer<Float>,
                       invStd: UnsafePointer<Float>, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
                       output: UnsafeMutablePointer<Float>, relu: Bool, residual: Residual? = nil) {
    let scale = UnsafeMutablePointer<Float>.allocate(capacity: 4 * channels)
    defer { scale.deallocate() }
    let shift = scale + channels
    foldScaleShift(channels: channels, mean: mean, invStd: invStd, gamma: gamma, beta: beta, into: scale)
    if case .normalised(_, let rMean, let rInvStd, let rGamma, let rBeta) = residual {
        // The residual BatchNorm's own fold: the same Float scale and shift its output pass uses.
        foldScaleShift(channels: channels, mean: rMean, invStd: rInvStd, gamma: rGamma, beta: rBeta,
                       into: scale + 2 &* channels)
    }
    parallelRanges(rows, workPerItem: channels, align: 1) { rowRange in
        switch residual {
        case .map(let residual):
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels, z = residual + r &* channels
                if relu {
                    for c in 0..<channels { y[c] = max((x[c] * scale[c] + shift[c]) + z[c], 0) }
                } else {
                    for c in 0..<channels { y[c] = (x[c] * scale[c] + shift[c]) + z[c] }
                }
            }
        case .normalised(let residual, _, _, _, _):
            let rScale = scale + 2 &* channels, rShift = scale + 3 &* channels
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels, z = residual + r &* channels
                if relu {
                    for c in 0..<channels { y[c] = max((x[c] * scale[c] + shift[c]) + (z[c] * rScale[c] + rShift[c]), 0) }
                } else {
                    for c in 0..<channels { y[c] = (x[c] * scale[c] + shift[c]) + (z[c] * rScale[c] + rShift[c]) }
                }
            }
        case nil where relu:
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels
                for c in 0..<channels { y[c] = max(x[c] * scale[c] + shift[c], 0) }
            }
        case nil:
            for r in rowRange {
                let x = input + r &* channels, y = output + r &* channels
                for c in 0..<channels { y[c] = x[c] * scale[c] + shift[c] }
            }
        }
    }
}

/// scale = invStd * gamma into fold[0..<channels], shift = beta - mean * scale into
/// fold[channels..<2 channels]: BN(x) = x * scale + shift.
private func foldScaleShift(channels: Int, mean: UnsafePointer<Float>, invStd: UnsafePointer<Float>,
                            gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, into fold: UnsafeMutablePointer<Float>) {
    for c in 0..<channels {
        let s = Double(invStd[c]) * Double(gamma[c])
        fold[c] = Float(s)
        fold[channels + c] = Float(Double(beta[c]) - Double(mean[c]) * s)
    }
}
