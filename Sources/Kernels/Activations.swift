/// output = max(input, 0). In place (output == input) is allowed.
public func reluForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// gradInput = gradOutput where output > 0, else 0. `output` is the forward
/// output. In place (gradInput == gradOutput) is allowed.
public func reluBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                         gradInput: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// Per-channel PReLU over [rows, channels]: x > 0 ? x : weight[c] * x.
public func preluForward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                         weight: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// gradWeight accumulates, gradInput is overwritten. `input` is the forward input.
public func preluBackward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                          weight: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          gradInput: UnsafeMutablePointer<Float>, gradWeight: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// output = 1 / (1 + exp(-input)), computed without overflow for large |x|.
public func sigmoidForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}

/// gradInput = gradOutput * output * (1 - output). `output` is the forward output.
public func sigmoidBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                            gradInput: UnsafeMutablePointer<Float>) {
    fatalError("TODO(kernels)")
}
