// MARK: Max-pool 3x3 / 2, padding 1

/// Max-pool 3x3, stride 2, padding 1 (padding never wins) over NHWC.
/// `argmax` [outputCount] receives, for each output, the flat input index chosen.
public func maxPool3x3s2Forward(batch: Int, height: Int, width: Int, channels: Int,
                                input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                argmax: UnsafeMutablePointer<Int32>) {
    precondition(batch * height * width * channels <= Int(Int32.max),
                 "maxPool3x3s2Forward: input of \(batch * height * width * channels) floats exceeds Int32 argmax indices")
    let outH = maxPool3x3s2OutputSize(height), outW = maxPool3x3s2OutputSize(width)
    for n in 0..<batch {
        for oy in 0..<outH {
            let y0 = max(0, 2 * oy - 1), y1 = min(height, 2 * oy + 2)
            for ox in 0..<outW {
                let x0 = max(0, 2 * ox - 1), x1 = min(width, 2 * ox + 2)
                let o = ((n &* outH &+ oy) &* outW &+ ox) &* channels
                let best = output + o, arg = argmax + o
                // Padding is never a candidate: only real pixels are scanned, starting
                // from the first one, so every argmax is a valid input index.
                let first = ((n &* height &+ y0) &* width &+ x0) &* channels
                for c in 0..<channels {
                    best[c] = input[first &+ c]
                    arg[c] = Int32(truncatingIfNeeded: first &+ c)
                }
                for iy in y0..<y1 {
                    for ix in x0..<x1 {
                        let base = ((n &* height &+ iy) &* width &+ ix) &* channels
                        if base == first { continue }
                        let src = input + base
                        let base32 = Int32(truncatingIfNeeded: base)
                        for c in 0..<channels {
                            let v = src[c], b = best[c]
                            let better = v > b  // strict: ties keep the first, as PyTorch
                            best[c] = better ? v : b
                            arg[c] = better ? base32 &+ Int32(truncatingIfNeeded: c) : arg[c]
                        }
                    }
                }
            }
        }
    }
}

/// Output spatial size of the 3x3/2 pad 1 max-pool for an input side.
public func maxPool3x3s2OutputSize(_ side: Int) -> Int { (side + 2 - 3) / 2 + 1 }

/// gradInput [N,H,W,C] is overwritten (zeros where no output chose it).
public func maxPool3x3s2Backward(batch: Int, height: Int, width: Int, channels: Int,
                                 gradOutput: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                                 gradInput: UnsafeMutablePointer<Float>) {
    let outCount = batch * maxPool3x3s2OutputSize(height) * maxPool3x3s2OutputSize(width) * channels
    gradInput.update(repeating: 0, count: batch * height * width * channels)
    for i in 0..<outCount { gradInput[Int(argmax[i])] += gradOutput[i] }
}

// MARK: Global average pool

/// Global average pool: output[n, c] = mean over the `spatial` = H*W positions.
public func globalAvgPoolForward(batch: Int, spatial: Int, channels: Int,
                                 input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    let inv = 1 / Float(spatial)
    for n in 0..<batch {
        let out = output + n &* channels
        out.update(repeating: 0, count: channels)
        let image = input + n &* spatial &* channels
        for p in 0..<spatial {
            let src = image + p &* channels
            for c in 0..<channels { out[c] += src[c] }
        }
        for c in 0..<channels { out[c] *= inv }
    }
}

/// gradInput[n, p, c] = gradOutput[n, c] / spatial (overwritten).
public func globalAvgPoolBackward(batch: Int, spatial: Int, channels: Int,
                                  gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
    let inv = 1 / Float(spatial)
    for n in 0..<batch {
        let g = gradOutput + n &* channels
        let image = gradInput + n &* spatial &* channels
        for p in 0..<spatial {
            let dst = image + p &* channels
            for c in 0..<channels { dst[c] = g[c] * inv }
        }
    }
}
