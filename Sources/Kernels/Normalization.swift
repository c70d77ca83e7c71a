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
    fatalError("TODO(kernels)")
}

/// Inference mode: normalise with the running statistics.
public func batchNormForwardInference(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    runningMean: UnsafePointer<Float>, runningVar: UnsafePointer<Float>, eps: Float,
    output: UnsafeMutablePointer<Float>
) {
    fatalError("TODO(kernels)")
}

/// Backward of the training-mode forward. gradGamma/gradBeta accumulate,
/// gradInput is overwritten.
public func batchNormBackward(
    rows: Int, channels: Int, input: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>, saveMean: UnsafePointer<Float>, saveInvStd: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
    gradGamma: UnsafeMutablePointer<Float>, gradBeta: UnsafeMutablePointer<Float>
) {
    fatalError("TODO(kernels)")
}
