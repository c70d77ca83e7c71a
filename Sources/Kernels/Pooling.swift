/// Max-pool 3x3, stride 2, padding 1 (padding never wins) over NHWC.
/// `argmax` [outputCount] receives, for each output, the flat input index chosen.
public func maxPool3x3s2Forward(batch: Int, height: Int, width: Int, channels: Int,
                                input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                argmax: UnsafeMutablePointer<Int32>) {
    fatalError("TODO(kernels)")
}

/// Output spatial size of the 3x3/2 pad 1 max-pool for an input side.
public func maxPool3x3s2OutputSize(_ side: Int) -> Int { (side + 2 - 3) / 2 + 1 }

/// gradInput [N,H,W,C] is overwritten (zeros where no output chose it).
public func maxPool3x3s2Backward(batch: Int, height: Int, width: Int, channels: Int,
                                 gradOutput: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                                 gradInput: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// Global average pool: output[n, c] = mean over the `spatial` = H*W positions.
public func globalAvgPoolForward(batch: Int, spatial: Int, channels: Int,
                                 input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// gradInput[n, p, c] = gradOutput[n, c] / spatial (overwritten).
public func globalAvgPoolBackward(batch: Int, spatial: Int, channels: Int,
                                  gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}
