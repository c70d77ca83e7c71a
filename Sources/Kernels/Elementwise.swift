/// The fully attentional block's combination: attended = f * m, output = f * m + f.
/// Either output may be nil when not needed.
public func attentionCombineForward(count: Int, f: UnsafePointer<Float>, m: UnsafePointer<Float>,
                                    attended: UnsafeMutablePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// Backward of `attentionCombineForward`. With gA = gradOutput + gradAttended
/// (gradAttended may be nil): gradF = gA * m + gradOutput, gradM = gA * f. Overwrites both.
public func attentionCombineBackward(count: Int, f: UnsafePointer<Float>, m: UnsafePointer<Float>,
                                     gradOutput: UnsafePointer<Float>, gradAttended: UnsafePointer<Float>?,
                                     gradF: UnsafeMutablePointer<Float>, gradM: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// Concatenates [rows, widths[i]] matrices along columns into [rows, sum(widths)].
public func concatColumns(rows: Int, parts: [UnsafePointer<Float>], widths: [Int],
                          output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// Inverse of `concatColumns`: splits [rows, sum(widths)] into its parts (overwritten).
public func splitColumns(rows: Int, input: UnsafePointer<Float>, widths: [Int],
                         parts: [UnsafeMutablePointer<Float>]) {
    fatalError("TODO(kernels)")
}

/// y += x.
public func addInPlace(count: Int, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// out = a + b (out may alias a or b).
public func add(count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// x *= alpha.
public func scale(count: Int, _ x: UnsafeMutablePointer<Float>, by alpha: Float) {
    fatalError("TODO(kernels)")
}

/// Sum of squares in double precision (for gradient norms and checks).
public func sumOfSquares(count: Int, _ x: UnsafePointer<Float>) -> Double {
    fatalError("TODO(kernels)")
}

/// NCHW -> NHWC copy (fixture images and PyTorch tensors are NCHW).
public func nchwToNHWC(batch: Int, channels: Int, height: Int, width: Int,
                       _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// NHWC -> NCHW copy.
public func nhwcToNCHW(batch: Int, channels: Int, height: Int, width: Int,
                       _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}
