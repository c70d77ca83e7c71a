import Foundation

// MARK: ReLU

/// output = max(input, 0). In place (output == input) is allowed.
public func reluForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in for i in range { output[i] = max(input[i], 0) } }
}

/// gradInput = gradOutput where output > 0, else 0. `output` is the forward
/// output. In place (gradInput == gradOutput) is allowed.
public func reluBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                         gradInput: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in
        for i in range {
            let g = gradOutput[i]  // loaded unconditionally so the select vectorises
            gradInput[i] = output[i] > 0 ? g : 0
        }
    }
}

// MARK: PReLU

/// Per-channel PReLU over [rows, channels]: x > 0 ? x : weight[c] * x.
public func preluForward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                         weight: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let x = input + r &* channels, y = output + r &* channels
        for c in 0..<channels {
            let v = x[c], negative = weight[c] * v  // both sides computed: a select vectorises
            y[c] = v > 0 ? v : negative
        }
    }
}

/// gradWeight accumulates, gradInput is overwritten. `input` is the forward input.
public func preluBackward(rows: Int, channels: Int, input: UnsafePointer<Float>,
                          weight: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                          gradInput: UnsafeMutablePointer<Float>, gradWeight: UnsafeMutablePointer<Float>) {
    // Per-channel sums of x * g over the non-positive inputs: Float within blocks of
    // rows (vectorised), Double across blocks.
    let block = 64
    let partial = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { partial.deallocate() }
    var total = [Double](repeating: 0, count: channels)
    var start = 0
    while start < rows {
        let end = min(rows, start + block)
        partial.update(repeating: 0, count: channels)
        // Two simple loops per row (each vectorises) rather than one with two outputs.
        for r in start..<end {
            let x = input + r &* channels, g = gradOutput + r &* channels, gi = gradInput + r &* channels
            for c in 0..<channels {
                let v = x[c], product = v * g[c]
                partial[c] += v > 0 ? 0 : product
            }
            for c in 0..<channels {  // after the sum, so gradInput == gradOutput also works
                let v = x[c], gv = g[c], negative = weight[c] * gv
                gi[c] = v > 0 ? gv : negative
            }
        }
        for c in 0..<channels { total[c] += Double(partial[c]) }
        start = end
    }
    for c in 0..<channels { gradWeight[c] += Float(total[c]) }
}

// MARK: Sigmoid

/// output = 1 / (1 + exp(-input)), computed without overflow for large |x|:
/// with e = exp(-|x|) in (0, 1], sigmoid is 1 / (1 + e) for x >= 0 and e / (1 + e)
/// below, so nothing overflows and small outputs keep their relative precision.
/// Branch-free with an inlined exp so the loop vectorises.
public func sigmoidForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    parallelRanges(count, workPerItem: 8) { range in
        for i in range {
            let x = input[i]
            let e = expNonPositive(-abs(x))
            let inverse = 1 / (1 + e)
            output[i] = x >= 0 ? inverse : e * inverse
        }
    }
}

/// exp(x) for x <= 0 in float32 (Cephes expf: range reduction by ln 2, degree-5
/// polynomial, scale by 2^n through the exponent bits), ~1 ulp. Below -87 the
/// result is flushed to 0 (exp(-87) ~ 1.6e-38; no denormals). NaN propagates. Rounding uses the 1.5 * 2^23 trick instead of floor, which the
/// baseline x86-64 target would call out of line, blocking vectorisation.
@inline(__always)
func expNonPositive(_ input: Float) -> Float {
    let x = max(input, -87)  // max(NaN, -87) keeps NaN
    let magic: Float = 12_582_912  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
    let shifted = x * 1.44269504088896341 + magic
    let n = shifted - magic  // round(x / ln 2), in [-126, 0]
    var r = x - n * 0.693359375  // x - n ln 2 in two steps for precision
    r = r - n * -2.12194440e-4
    let z = r * r
    var p: Float = 1.9875691500e-4
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    let y = p * z + r + 1
    // 2^n from its exponent bits; n is read back from the integer bits of `shifted`.
    let nBits = shifted.bitPattern &- magic.bitPattern  // n as a two's-complement UInt32
    let scale = Float(bitPattern: (nBits &+ 127) &<< 23)
    return input < -87 ? 0 : y * scale
}

/// gradInput = gradOutput * output * (1 - output). `output` is the forward output.
public func sigmoidBackward(count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                            gradInput: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in
        for i in range {
            let y = output[i]
            gradInput[i] = gradOutput[i] * y * (1 - y)
        }
    }
}
