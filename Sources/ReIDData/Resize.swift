// MARK: Bilinear resampling (PIL-like)

/// Per-output-coordinate filter taps along one axis, as PIL's bilinear
/// `resize(size, box=...)` computes them: output pixel i samples the source
/// at the half-pixel centre `box0 + (i + 0.5) * scale`; when shrinking
/// (scale > 1) the triangle filter widens by `scale` (antialiasing), when
/// enlarging it is plain bilinear interpolation with edge clamping.
struct ResampleAxis {
    var start: [Int] = []     // first source index of each output coordinate
    var weights: [Float] = [] // `taps` normalised weights per output coordinate (zero-padded)
    var taps = 0

    init(inSize: Int, outSize: Int, box0: Double, boxLength: Double) {
        precondition(inSize > 0 && outSize > 0 && boxLength > 0, "resample: empty axis (in \(inSize), out \(outSize), box \(boxLength))")
        let scale = boxLength / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filterScale // bilinear filter support is 1
        taps = Int((support * 2).rounded(.up)) + 1
        start = [Int](repeating: 0, count: outSize)
        weights = [Float](repeating: 0, count: outSize * taps)
        var w = [Double](repeating: 0, count: taps)
        for i in 0..<outSize {
            let center = box0 + (Double(i) + 0.5) * scale
            let lo = max(Int((center - support + 0.5).rounded(.down)), 0)
            let hi = min(Int((center + support + 0.5).rounded(.down)), inSize)
            var sum = 0.0
            var n = 0
            for x in lo..<max(hi, lo) where n < taps {
                let t = abs((Double(x) - center + 0.5) / filterScale)
                w[n] = t < 1 ? 1 - t : 0
                sum += w[n]
                n += 1
            }
            if sum <= 0 { // a box outside the image: take the nearest edge pixel
                start[i] = min(max(Int(center), 0), inSize - 1)
                weights[i * taps] = 1
                continue
            }
            start[i] = lo
            for k in 0..<n { weights[i * taps + k] = Float(w[k] / sum) }
        }
    }
}

/// Resamples the region `box` (x, y, width, height in source pixels) of an
/// interleaved 3-channel float image to outW x outH. `temp` is scratch space
/// reused across calls.
func resampleRGB(
    _ src: UnsafePointer<Float>, width srcW: Int, height srcH: Int,
    box: (x: Double, y: Double, w: Double, h: Double),
    into dst: UnsafeMutablePointer<Float>, width outW: Int, height outH: Int,
    temp: inout [Float]
) {
    let ax = ResampleAxis(inSize: srcW, outSize: outW, box0: box.x, boxLength: box.w)
    let ay = ResampleAxis(inSize: srcH, outSize: outH, box0: box.y, boxLength: box.h)
    // Only the source rows the vertical pass touches go through the horizontal pass.
    let rowLo = ay.start.min() ?? 0
    let rowHi = min(srcH, (ay.start.max() ?? 0) + ay.taps)
    let rows = rowHi - rowLo
    if temp.count < rows * outW * 3 { temp = [Float](repeating: 0, count: rows * outW * 3) }
    temp.withUnsafeMutableBufferPointer { tb in
        let t = tb.baseAddress!
        ax.weights.withUnsafeBufferPointer { wx in
            ax.start.withUnsafeBufferPointer { sx in
                let taps = ax.taps
                for r in 0..<rows {
                    let srow = src + (r &+ rowLo) &* srcW &* 3
                    let trow = t + r &* outW &* 3
                    for o in 0..<outW {
                        let s0 = sx[o]
                        var a: Float = 0, b: Float = 0, c: Float = 0
                        let wBase = o &* taps
                        let n = min(taps, srcW &- s0)
                        for k in 0..<n {
                            let wk = wx[wBase &+ k]
                            let p = srow + (s0 &+ k) &* 3
                            a += wk * p[0]; b += wk * p[1]; c += wk * p[2]
                        }
                        trow[o &* 3] = a; trow[o &* 3 &+ 1] = b; trow[o &* 3 &+ 2] = c
                    }
                }
            }
        }
        ay.weights.withUnsafeBufferPointer { wy in
            let taps = ay.taps
            let rowLen = outW &* 3
            for o in 0..<outH {
                let drow = dst + o &* rowLen
                for x in 0..<rowLen { drow[x] = 0 }
                let s0 = ay.start[o] &- rowLo
                let n = min(taps, rows &- s0)
                for k in 0..<n {
                    let wk = wy[o &* taps &+ k]
                    if wk == 0 { continue }
                    let trow = t + (s0 &+ k) &* rowLen
                    for x in 0..<rowLen { drow[x] += wk * trow[x] }
                }
            }
        }
    }
}
