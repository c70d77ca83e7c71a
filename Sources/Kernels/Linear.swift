/// output[rows, out] = input[rows, in] * weight[out, in]^T + bias[out].
public func linearForward(rows: Int, inFeatures: Int, outFeatures: Int,
                          input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                          bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// gradWeight += gradOutput^T * input; gradBias += column sums of gradOutput;
/// gradInput = gradOutput * weight (skipped when nil).
public func linearBackward(rows: Int, inFeatures: Int, outFeatures: Int,
                           input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
                           gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?) {
    fatalError("TODO(kernels)")
}
