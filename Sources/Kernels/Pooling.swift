// MARK: Max-pool 3x3 / 2, padding 1

/// Max-pool 3x3, stride 2, padding 1 (padding never wins) over NHWC.
/// `argmax` [outputCount] receives, for each output, the flat input index chosen.
public func maxPool3x3s2Forward(batch: Int, height: Int, width: Int, channels: Int,
                                input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                argmax: UnsafeMutablePointer<Int32>) {
    require(height > 0 && width > 0 && channels > 0, "maxPool3x3s2Forward: empty input \(batch)x\(height)x\(width)x\(channels)")
    require(batch * height * width * channels <= Int(Int32.max),
                 "maxPool3x3s2Forward: input of \(batch * height * width * channels) floats exceeds Int32 argmax indices")
    let outH = maxPool3x3s2OutputSize(height), outW = maxPool3x3s2OutputSize(width)
    let lanes = SIMD4<Int32>(0, 1, 2, 3)
    parallelRanges(batch, workPerItem: outH * outW * channels * 9, align: 1) { images in
        for n in images {
            for oy in 0..<outH {
                let y0 = max(0, 2 * oy - 1), y1 = min(height, 2 * oy + 2)
                for ox in 0..<outW {
                    let x0 = max(0, 2 * ox - 1), x1 = min(width, 2 * ox + 2)
                    let o = ((n &* outH &+ oy) &* outW &+ ox) &* channels
                    // Padding is never a candidate: only real pixels are scanned, starting
                    // from the first one, so every argmax is a valid input index. Strict `>`
                    // keeps the first of equal values, as PyTorch does.
                    let first = ((n &* height &+ y0) &* width &+ x0) &* channels
                    var c = 0
                    // Four channels at a time, the running max kept in registers across the taps.
                    while c &+ 4 <= channels {
                        var best = loadVector(input + (first &+ c), as: SIMD4<Float>.self)
                        var arg = SIMD4<Int32>(repeating: Int32(truncatingIfNeeded: first &+ c)) &+ lanes
                        for iy in y0..<y1 {
                            for ix in x0..<x1 {
                                let base = ((n &* height &+ iy) &* width &+ ix) &* channels &+ c
                                if base == first &+ c { continue }
                                let v = loadVector(input + base, as: SIMD4<Float>.self)
                                let better = v .> best
                                best.replace(with: v, where: better)
                                arg.replace(with: SIMD4<Int32>(repeating: Int32(truncatingIfNeeded: base)) &+ lanes, where: better)
                            }
                        }
                        UnsafeMutableRawPointer(output + (o &+ c)).storeBytes(of: best, as: SIMD4<Float>.self)
                        UnsafeMutableRawPointer(argmax + (o &+ c)).storeBytes(of: arg, as: SIMD4<Int32>.self)
                        c &+= 4
                    }
                    while c < channels {
                        var best = input[first &+ c]
                        var arg = first &+ c
                        for iy in y0..<y1 {
                            for ix in x0..<x1 {
                                let i = ((n &* height &+ iy) &* width &+ ix) &* channels &+ c
                                if input[i] > best { best = input[i]; arg = i }
                            }
                        }
                        output[o &+ c] = best
                        argmax[o &+ c] = Int32(truncatingIfNeeded: arg)
                        c &+= 1
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
    // Split by image: every argmax points into its own image, so parts never collide.
    let outPerImage = maxPool3x3s2OutputSize(height) * maxPool3x3s2OutputSize(width) * channels
    let inPerImage = height * width * channels
    parallelRanges(batch, workPerItem: inPerImage, align: 1) { images in
        (gradInput + images.lowerBound &* inPerImage).update(repeating: 0, count: images.count &* inPerImage)
        for i in (images.lowerBound &* outPerImage)..<(images.upperBound &* outPerImage) {
            gradInput[Int(argmax[i])] += gradOutput[i]
        }
    }
}

// MARK: Global average pool

/// Global average pool: output[n, c] = mean over the `spatial` = H*W positions.
public func globalAvgPoolForward(batch: Int, spatial: Int, channels: Int,
                                 input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    require(spatial > 0, "globalAvgPoolForward: spatial size must be positive, got \(spatial)")
    let inv = 1 / Float(spatial)
    parallelRanges(batch, workPerItem: spatial * channels, align: 1) { images in
        for n in images {
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
}

/// gradInput[n, p, c] = gradOutput[n, c] / spatial (overwritten).
public func globalAvgPoolBackward(batch: Int, spatial: Int, channels: Int,
                                  gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
    require(spatial > 0, "globalAvgPoolBackward: spatial size must be positive, got \(spatial)")
    let inv = 1 / Float(spatial)
    parallelRanges(batch, workPerItem: spatial * channels, align: 1) { images in
        for n in images {
            let g = gradOutput + n &* channels
            let image = gradInput + n &* spatial &* channels
            for p in 0..<spatial {
                let dst = image + p &* channels
                for c in 0..<channels { dst[c] = g[c] * inv }
            }
        }
    }
}
