// BatchNorm over a [rows, channels] matrix. Rows are walked in order with the
// channel loop innermost, so every pass is a contiguous, vectorisable sweep.

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
    // sumG[c] = sum_r g, sumGX[c] = sum_r g * xhat with xhat = (x - mean) * invStd.
    // Synchronised: [rows, sumG, sumGX] in one buffer, for one allreduce.
    var sums = [Double](repeating: 0, count: 1 + 2 * channels)
    sums.withUnsafeMutableBufferPointer { all in
        let sumG = all.baseAddress! + 1, sumGX = sumG + channels
        do {
            if let precomputed {
                sumG.update(from: precomputed.sumG, count: channels)
                sumGX.update(from: precomputed.sumGX, count: channels)
            } else {
                gradientSums(rows: rows, channels: channels, input: input, reluFold: reluFold, mean: saveMean,
                             gradOutput: gradOutput, sumG: sumG, sumGX: sumGX)
            }
            for c in 0..<channels {
                sumGX[c] *= Double(saveInvStd[c])
                gradBeta[c] += Float(sumG[c])
                gradGamma[c] += Float(sumGX[c])
            }
            // gamma and beta take this shard's sums (the gradient allreduce adds the
            // shards); the input gradient needs the whole batch's.
            all[0] = Double(rows)
            if let reducer { reducer.sumOverReplicas(all) }
            let batchRows = all[0]
            // gradInput = gamma * invStd * (g - sumG / rows - xhat * sumGX / rows)
            //           = a[c] * g + b[c] * x + d[c]
            let a = UnsafeMutablePointer<Float>.allocate(capacity: 3 * channels)
            defer { a.deallocate() }
            let b = a + channels, d = a + 2 * channels
            let invRows = 1 / batchRows
            for c in 0..<channels {
                let k = Double(gamma[c]) * Double(saveInvStd[c])
                let meanG = sumG[c] * invRows
                let slope = sumGX[c] * invRows * Double(saveInvStd[c])  // multiplies (x - mean)
                a[c] = Float(k)
                b[c] = Float(-k * slope)
                d[c] = Float(k * (slope * Double(saveMean[c]) - meanG))
            }
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

/// Turns this shard's per-channel mean and biased variance into the whole batch's:
/// one allreduce of [rows, sum, sum of squares] in Double (whose 53 bits make the
/// E[x^2] - E[x]^2 cancellation harmless at BatchNorm's scales). Returns the batch's rows.
private func globalMoments(rows: Int, channels: Int, mean: UnsafeMutableBufferPointer<Double>,
                           variance: UnsafeMutableBufferPointer<Double>,
                           _ reducer: BatchNormStatisticsReducer) -> Double {
    var sums = [Double](repeating: 0, count: 1 + 2 * channels)
    return sums.withUnsafeMutableBufferPointer { all in
        let n = Double(rows)
        all[0] = n
        for c in 0..<channels {
            all[1 + c] = n * mean[c]
            all[1 + channels + c] = n * (variance[c] + mean[c] * mean[c])
        }
        reducer.sumOverReplicas(all)
        let total = all[0]
        for c in 0..<channels {
            mean[c] = all[1 + c] / total
            variance[c] = max(all[1 + channels + c] / total - mean[c] * mean[c], 0)
        }
        return total
    }
}

/// Rows per statistics block: a block of about 64 KiB stays in cache for its second
/// sweep; within a block sums are Float (vectorised), across blocks Double.
private func blockRows(channels: Int) -> Int { max(4, 16_384 / max(1, channels)) }

/// The one partition every statistics pass shares: the rows' blocks (`blockRows`, or
/// `block` rows when given) are cut into `PieceSchedule` runs, which the compute
/// threads take as they come free; `run` gets its run's rows, the block size and
/// `stride` zeroed Doubles of output; then `merge` gets every run's output, run after
/// run (runs with no rows left at zero). So passes that sum the same rows (the gradient
/// sums, and the ReLU backward that forms them) sum them in the same order, and a
/// result depends only on the thread count, not on which thread ran which run.
func overBlockRuns(rows: Int, channels: Int, block: Int? = nil, stride: Int,
                   run: (_ rows: Range<Int>, _ block: Int, _ out: UnsafeMutablePointer<Double>) -> Void,
                   merge: (_ perRun: UnsafePointer<Double>, _ runs: Int) -> Void) {
    let block = block ?? blockRows(channels: channels)
    let blocks = (rows + block - 1) / block
    withComputePool(work: rows &* channels) { pool in
        let schedule = PieceSchedule(blocks, parts: pool?.size ?? 1), runs = schedule.pieces
        let perRun = UnsafeMutablePointer<Double>.allocate(capacity: runs * stride)
        defer { perRun.deallocate() }
        perRun.update(repeating: 0, count: runs * stride)
        func runPiece(_ piece: Int) {
            let runBlocks = schedule.range(piece)
            run(min(rows, runBlocks.lowerBound * block)..<min(rows, runBlocks.upperBound * block), block, perRun + piece &* stride)
        }
        if let pool { pool.dispatchPieces(schedule) { piece, _ in runPiece(piece) } } else { runPiece(0) }
        merge(perRun, runs)
    }
}

/// Per-channel mean and biased variance in one read of the input: each block is
/// reduced with the two-pass formula while it is in cache, and blocks are merged
/// in Double with Chan et al.'s pairwise update, so no E[x^2] - E[x]^2 cancellation.
/// Blocks are shared among the compute threads in contiguous runs; each run is merged
/// on its own, then the runs in order, so the result depends only on the thread count.
private func meanAndBiasedVariance(rows: Int, channels: Int, _ x: UnsafePointer<Float>,
                                   mean: UnsafeMutablePointer<Double>, variance: UnsafeMutablePointer<Double>) {
    // Per part: count, then mean[channels] and M2[channels].
    let stride = 1 + 2 * channels
    overBlockRuns(rows: rows, channels: channels, stride: stride, run: { rowRange, block, out in
        out[0] = Double(rowRange.count)
        blockMoments(rowRange, block: block, channels: channels, x, mean: out + 1, m2: out + 1 + channels)
    }, merge: { perPart, parts in
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
    })
    let invRows = 1 / Double(rows)
    for c in 0..<channels { variance[c] *= invRows }
}

/// sums[c] += x[r, c] for the rows `rows`, in row order, sixteen channels per vector
/// operation (explicit vectors: the compiler cannot prove the sums and x apart).
func addRows(_ rows: Range<Int>, channels: Int, _ x: UnsafePointer<Float>, into sums: UnsafeMutablePointer<Float>) {
    for r in rows {
        let row = x + r &* channels
        forEachVectorRun(channels, width: 16) { c0, n in
            storeVector(loadVector(sums + c0, count: n) + loadVector(row + c0, count: n, as: SIMD16<Float>.self),
                        sums + c0, count: n)
        }
    }
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
        // Block mean, then M2 about it (the block is still in cache). Rows in order,
        // sixteen channels per vector operation into the per-channel sums (explicit
        // vectors: the compiler cannot prove the sums and the input apart); each
        // channel's sum runs over the rows in order.
        partial.update(repeating: 0, count: channels)
        addRows(start..<end, channels: channels, x, into: partial)
        let invCount = 1 / Float(count)
        for c in 0..<channels { blockMean[c] = partial[c] * invCount }
        partial.update(repeating: 0, count: channels)
        for r in start..<end {
            let row = x + r &* channels
            forEachVectorRun(channels, width: 16) { c0, n in
                let d = loadVector(row + c0, count: n) - loadVector(blockMean + c0, count: n, as: SIMD16<Float>.self)
                storeVector(loadVector(partial + c0, count: n) + d * d, partial + c0, count: n)
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
/// (g masked by the forward's ReLU, x * scale + shift > 0, when `reluFold` is given). Blocks are shared among the compute threads in
/// contiguous runs, each summed in Double, then the runs added in order.
private func gradientSums(rows: Int, channels: Int, input: UnsafePointer<Float>, reluFold: UnsafePointer<Float>?,
                          mean: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          sumG: UnsafeMutablePointer<Double>, sumGX: UnsafeMutablePointer<Double>) {
    overBlockRuns(rows: rows, channels: channels, stride: 2 * channels, run: { rowRange, block, outG in
        let outGX = outG + channels
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
        defer { partial.deallocate() }
        let partialX = partial + channels
        var start = rowRange.lowerBound
        // Rows in order, sixteen channels per vector operation into the per-channel sums
        // (explicit vectors, as in `blockMoments`).
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: 2 * channels)
            for r in start..<end {
                let x = input + r &* channels, g = gradOutput + r &* channels
                forEachVectorRun(channels, width: 16) { c0, n in
                    let xv: SIMD16<Float> = loadVector(x + c0, count: n)
                    var gv: SIMD16<Float> = loadVector(g + c0, count: n)
                    if let reluFold {
                        let pre = xv * loadVector(reluFold + c0, count: n) + loadVector(reluFold + (channels &+ c0), count: n)
                        gv = SIMD16<Float>().replacing(with: gv, where: pre .> 0)
                    }
                    storeVector(loadVector(partial + c0, count: n) + gv, partial + c0, count: n)
                    storeVector(loadVector(partialX + c0, count: n) + gv * (xv - loadVector(mean + c0, count: n)),
                                partialX + c0, count: n)
                }
            }
            for c in 0..<channels {
                outG[c] += Double(partial[c])
                outGX[c] += Double(partialX[c])
            }
            start = end
        }
    }, merge: { perPart, parts in
        sumG.update(repeating: 0, count: channels)
        sumGX.update(repeating: 0, count: channels)
        for part in 0..<parts {
            let g = perPart + part &* 2 &* channels, gx = g + channels
            for c in 0..<channels {
                sumG[c] += g[c]
                sumGX[c] += gx[c]
            }
        }
    })
}

// MARK: ReLU backward fused with BatchNorm gradient sums

/// gradInput = gradOutput where output > 0, else 0 (`reluBackward`; in place allowed),
/// and in the same pass the gradient sums of the BatchNorms whose output gradient that
/// is: one or two (`second`), given by their input and saved mean. A residual block's
/// final ReLU feeds bn3 and a projection shortcut's BN alike; reading the gradient once
/// for all of them saves a read of the map per BatchNorm. Each result is bit for bit
/// what `batchNormBackward` would sum from gradInput itself (`gradientSums`: the same
/// blocks, the same parts, rows in order; sum_r g is shared, being the same numbers).
public func reluBackwardWithBatchNormSums(
    rows: Int, channels: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradInput: UnsafeMutablePointer<Float>,
    first: (input: UnsafePointer<Float>, mean: UnsafePointer<Float>),
    second: (input: UnsafePointer<Float>, mean: UnsafePointer<Float>)? = nil
) -> [BatchNormGradientSums] {
    let inputs = second.map { [first, $0] } ?? [first]
    let k = inputs.count
    // Per part: sumG, then sumGX of each input.
    let stride = (1 + k) &* channels
    var results = [BatchNormGradientSums](repeating: BatchNormGradientSums(sumG: [Double](repeating: 0, count: channels),
                                                                             sumGX: [Double](repeating: 0, count: channels)),
                                          count: k)
    overBlockRuns(rows: rows, channels: channels, stride: stride, run: { rowRange, block, out in
        let partial = UnsafeMutablePointer<Float>.allocate(capacity: stride)
        defer { partial.deallocate() }
        let x0 = inputs[0].input, m0 = inputs[0].mean
        let x1 = k > 1 ? inputs[1].input : x0, m1 = k > 1 ? inputs[1].mean : m0
        var start = rowRange.lowerBound
        while start < rowRange.upperBound {
            let end = min(rowRange.upperBound, start + block)
            partial.update(repeating: 0, count: stride)
            for r in start..<end {
                let row = r &* channels
                let o = output + row, g = gradOutput + row, gi = gradInput + row
                forEachVectorRun(channels, width: 16) { c0, n in
                    let raw: SIMD16<Float> = loadVector(g + c0, count: n)
                    let gv = SIMD16<Float>().replacing(with: raw, where: loadVector(o + c0, count: n) .> 0)
                    storeVector(gv, gi + c0, count: n)
                    storeVector(loadVector(partial + c0, count: n) + gv, partial + c0, count: n)
                    let s0 = partial + (channels &+ c0)
                    storeVector(loadVector(s0, count: n) + gv * (loadVector(x0 + (row &+ c0), count: n)
                                                               - loadVector(m0 + c0, count: n)), s0, count: n)
                    if k > 1 {
                        let s1 = partial + (2 &* channels &+ c0)
                        storeVector(loadVector(s1, count: n) + gv * (loadVector(x1 + (row &+ c0), count: n)
                                                                   - loadVector(m1 + c0, count: n)), s1, count: n)
                    }
                }
            }
            for i in 0..<stride { out[i] += Double(partial[i]) }
            start = end
        }
    }, merge: { perPart, parts in
        for part in 0..<parts {
            let p = perPart + part &* stride
            for i in 0..<k {
                for c in 0..<channels {
                    results[i].sumG[c] += p[c]
                    results[i].sumGX[c] += p[(1 &+ i) &* channels &+ c]
                }
            }
        }
    })
    return results
}
