import Foundation

// MARK: Attention combination

/// The fully attentional block's combination: attended = f * m, output = f * m + f.
/// Either output may be nil when not needed.
public func attentionCombineForward(count: Int, f: UnsafePointer<Float>, m: UnsafePointer<Float>,
                                    attended: UnsafeMutablePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in
        if let attended {
            for i in range {
                let a = f[i] * m[i]
                attended[i] = a
                output[i] = a + f[i]
            }
        } else {
            for i in range { output[i] = f[i] * m[i] + f[i] }
        }
    }
}

/// Backward of `attentionCombineForward`. With gA = gradOutput + gradAttended
/// (gradAttended may be nil): gradF = gA * m + gradOutput, gradM = gA * f. Overwrites both.
public func attentionCombineBackward(count: Int, f: UnsafePointer<Float>, m: UnsafePointer<Float>,
                                     gradOutput: UnsafePointer<Float>, gradAttended: UnsafePointer<Float>?,
                                     gradF: UnsafeMutablePointer<Float>, gradM: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in
        if let gradAttended {
            for i in range {
                let g = gradOutput[i], gA = g + gradAttended[i]
                let fv = f[i], mv = m[i]
                gradF[i] = gA * mv + g
                gradM[i] = gA * fv
            }
        } else {
            for i in range {
                let g = gradOutput[i]
                let fv = f[i], mv = m[i]
                gradF[i] = g * mv + g
                gradM[i] = g * fv
            }
        }
    }
}

// MARK: Column concatenation

/// Concatenates [rows, widths[i]] matrices along columns into [rows, sum(widths)].
public func concatColumns(rows: Int, parts: [UnsafePointer<Float>], widths: [Int],
                          output: UnsafeMutablePointer<Float>) {
    require(parts.count == widths.count, "concatColumns: \(parts.count) parts but \(widths.count) widths")
    let total = widths.reduce(0, +)
    var offset = 0
    for (part, width) in zip(parts, widths) {
        for r in 0..<rows {
            (output + (r &* total &+ offset)).update(from: part + r &* width, count: width)
        }
        offset += width
    }
}

/// Inverse of `concatColumns`: splits [rows, sum(widths)] into its parts (overwritten).
public func splitColumns(rows: Int, input: UnsafePointer<Float>, widths: [Int],
                         parts: [UnsafeMutablePointer<Float>]) {
    require(parts.count == widths.count, "splitColumns: \(parts.count) parts but \(widths.count) widths")
    let total = widths.reduce(0, +)
    var offset = 0
    for (part, width) in zip(parts, widths) {
        for r in 0..<rows {
            (part + r &* width).update(from: input + (r &* total &+ offset), count: width)
        }
        offset += width
    }
}

// MARK: Arithmetic

/// y += x.
public func addInPlace(count: Int, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in for i in range { y[i] += x[i] } }
}

/// out = a + b (out may alias a or b).
public func add(count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in for i in range { out[i] = a[i] + b[i] } }
}

/// dst = src (no aliasing).
public func copy(count: Int, _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
    parallelRanges(count) { range in
        (dst + range.lowerBound).update(from: src + range.lowerBound, count: range.count)
    }
}

/// x[0..<count] = value, split over the compute threads (the gradients' zeroing each
/// step: 100 MB at full size, a one-thread sweep otherwise).
public func fill(count: Int, _ x: UnsafeMutablePointer<Float>, with value: Float) {
    parallelRanges(count) { range in (x + range.lowerBound).update(repeating: value, count: range.count) }
}

/// x *= alpha.
public func scale(count: Int, _ x: UnsafeMutablePointer<Float>, by alpha: Float) {
    parallelRanges(count) { range in for i in range { x[i] *= alpha } }
}

/// Sum of squares in double precision (for gradient norms and checks): blocks of 2^16
/// floats, each summed over four partial sums so the loop vectorises, the blocks split
/// over the compute threads and their sums added in block order, so the result does not
/// depend on the thread count (the gradient norm of 25 M parameters every step).
public func sumOfSquares(count: Int, _ x: UnsafePointer<Float>) -> Double {
    let block = 1 << 16
    let blocks = (count + block - 1) / block
    guard blocks > 1 else { return blockSumOfSquares(count: count, x) }
    let sums = UnsafeMutablePointer<Double>.allocate(capacity: blocks)
    defer { sums.deallocate() }
    parallelRanges(blocks, workPerItem: block, align: 1) { range in
        for b in range { sums[b] = blockSumOfSquares(count: min(block, count &- b &* block), x + b &* block) }
    }
    var total = 0.0
    for b in 0..<blocks { total += sums[b] }
    return total
}

private func blockSumOfSquares(count: Int, _ x: UnsafePointer<Float>) -> Double {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i &+ 4 <= count {
        let a = Double(x[i]), b = Double(x[i &+ 1]), c = Double(x[i &+ 2]), d = Double(x[i &+ 3])
        s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
        i &+= 4
    }
    while i < count { let a = Double(x[i]); s0 += a * a; i &+= 1 }
    return (s0 + s1) + (s2 + s3)
}

// MARK: Layout conversion

/// NCHW -> NHWC copy (fixture images and PyTorch tensors are NCHW).
public func nchwToNHWC(batch: Int, channels: Int, height: Int, width: Int,
                       _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
    let plane = height * width
    for n in 0..<batch {
        let s = src + n &* channels &* plane, d = dst + n &* channels &* plane
        // Tiles of pixels keep the scattered side of the transpose in cache.
        var p0 = 0
        while p0 < plane {
            let p1 = min(plane, p0 &+ layoutTile)
            for c in 0..<channels {
                let sc = s + c &* plane
                for p in p0..<p1 { d[p &* channels &+ c] = sc[p] }
            }
            p0 = p1
        }
    }
}

/// NHWC -> NCHW copy.
public func nhwcToNCHW(batch: Int, channels: Int, height: Int, width: Int,
                       _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
    let plane = height * width
    for n in 0..<batch {
        let s = src + n &* channels &* plane, d = dst + n &* channels &* plane
        var p0 = 0
        while p0 < plane {
            let p1 = min(plane, p0 &+ layoutTile)
            for c in 0..<channels {
                let dc = d + c &* plane
                for p in p0..<p1 { dc[p] = s[p &* channels &+ c] }
            }
            p0 = p1
        }
    }
}

/// Pixels per transpose tile.
private let layoutTile = 64
