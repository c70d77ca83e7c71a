import Foundation

// MARK: ReLU

/// output = max(input, 0). In place (output == input) is allowed.
public func reluForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for i in 0..<count { output[i] = max(input[i], 0) }
}

/// gradInput = gradOutput where output > 0, else 0. `output` is the forward
/// output. In place (gradInput == gradOutput) is allowed.
public func reluBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                         gradInput: UnsafeMutablePointer<Float>) {
    for i in 0..<count { gradInput[i] = output[i] > 0 ? gradOutput[i] : 0 }
}

// MARK: PReLU

/// Per-channel PReLU over [rows, channels]: x > 0 ? x : weight[c] * x.
public func preluForward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                         weight: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let x = input + r &* channels, y = output + r &* channels
        for c in 0..<channels {
            let v = x[c]
            y[c] = v > 0 ? v : weight[c] * v
        }
    }
}

/// gradWeight accumulates, gradInput is overwritten. `input` is the forward input.
public func preluBackward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                          weight: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          gradInput: UnsafeMutablePointer<Float>, gradWeight: UnsafeMutablePointer<Float>) {
    // Per-channel sums of x * g over the non-positive inputs, kept in Double.
    var sums = [Double](repeating: 0, count: channels)
    sums.withUnsafeMutableBufferPointer { acc in
        for r in 0..<rows {
            let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
            for c in 0..<channels {
                let v = x[c], gv = g[c]
                let positive = v > 0
                gi[c] = positive ? gv : weight[c] * gv
                acc[c] += positive ? 0 : Double(v * gv)
            }
        }
        for c in 0..<channels { gradWeight[c] += Float(acc[c]) }
    }
}

// MARK: Sigmoid

/// output = 1 / (1 + exp(-input)), computed without overflow for large |x|.
public func sigmoidForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for i in 0..<count {
        let x = input[i]
        if x >= 0 {
            output[i] = 1 / (1 + exp(-x))
        } else {
            let e = exp(x)  // in (0, 1): no overflow
            output[i] = e / (1 + e)
        }
    }
}

/// gradInput = gradOutput * output * (1 - output). `output` is the forward output.
public func sigmoidBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                            gradInput: UnsafeMutablePointer<Float>) {
    for i in 0..<count {
        let y = output[i]
        gradInput[i] = gradOutput[i] * y * (1 - y)
    }
}
