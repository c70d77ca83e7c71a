// im2col / col2im for NHWC with a square kernel.
//
// Column matrix layout: one row per output pixel (n, oy, ox), holding the
// k x k x Cin patch in (ky, kx, ci) order -- the same order as a row of an OHWI
// weight [Cout, k*k*Cin], so output = col * W^T is a single GEMM.
//
// For a fixed (output pixel, ky) the valid kx taps read consecutive input
// pixels, which in NHWC are one contiguous run of (valid taps) * Cin floats;
// out-of-image taps are zero-filled. So each (row, ky) is at most one memset,
// one copy and one memset.

// MARK: im2col

/// Fills `col` [images * oh * ow, k*k*Cin] from `images` consecutive NHWC images at `input`.
/// Split over the compute threads by output rows (n, oy): each part writes its own column rows.
func im2col(_ s: Conv2DShape, images: Int, input: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
    let k = s.kernel, cin = s.inChannels, H = s.inHeight, W = s.inWidth
    let oh = s.outHeight, ow = s.outWidth
    let rowLength = k &* k &* cin, tapRun = k &* cin
    parallelRanges(images &* oh, workPerItem: ow &* rowLength, align: 1) { outputRows in
        var dst = col + outputRows.lowerBound &* ow &* rowLength
        for t in outputRows {
            let n = t / oh, oy = t % oh
            let image = input + n &* H &* W &* cin
            let iyBase = oy &* s.stride &- s.padding
            for ox in 0..<ow {
                let ixBase = ox &* s.stride &- s.padding
                let kx0 = max(0, -ixBase), kx1 = min(k, W &- ixBase)
                for ky in 0..<k {
                    let iy = iyBase &+ ky
                    let out = dst + ky &* tapRun
                    if iy < 0 || iy >= H || kx0 >= kx1 {
                        out.update(repeating: 0, count: tapRun)
                        continue
                    }
                    if kx0 > 0 { out.update(repeating: 0, count: kx0 &* cin) }
                    out.advanced(by: kx0 &* cin).update(
                        from: image + (iy &* W &+ ixBase &+ kx0) &* cin, count: (kx1 &- kx0) &* cin)
                    if kx1 < k { out.advanced(by: kx1 &* cin).update(repeating: 0, count: (k &- kx1) &* cin) }
                }
                dst += rowLength
            }
        }
    }
}

// MARK: col2im

/// Adds every column entry back onto the input pixel it was copied from:
/// `gradInput` (`images` NHWC images) += col2im(`col`); with `zeroingFirst`, gradInput =
/// col2im(`col`) (each part zeroes its own rows before adding, so the zeroing is split
/// over the threads too instead of being a one-thread sweep before the call).
/// Split over the compute threads by input rows (n, iy): each part walks the output
/// pixels in the same order as a single thread would and adds only the taps that land
/// in its rows, so parts never collide and every sum is formed in the same order.
func col2imAccumulate(_ s: Conv2DShape, images: Int, col: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>,
                      zeroingFirst: Bool = false) {
    let k = s.kernel, cin = s.inChannels, H = s.inHeight, W = s.inWidth
    let oh = s.outHeight, ow = s.outWidth
    let rowLength = k &* k &* cin, tapRun = k &* cin
    parallelRanges(images &* H, workPerItem: W &* cin &* k, align: 1) { inputRows in
        if zeroingFirst {
            (gradInput + inputRows.lowerBound &* W &* cin).update(repeating: 0, count: inputRows.count &* W &* cin)
        }
        let firstImage = inputRows.lowerBound / H, lastImage = (inputRows.upperBound - 1) / H
        for n in firstImage...lastImage {
            // This part's input rows within image n, and the output rows that can reach them.
            let lo = max(0, inputRows.lowerBound &- n &* H), hi = min(H, inputRows.upperBound &- n &* H)
            let oyFirst = max(0, (lo &+ s.padding &- k &+ s.stride) / s.stride)
            let oyEnd = min(oh, (hi &- 1 &+ s.padding) / s.stride &+ 1)
            guard oyFirst < oyEnd else { continue }
            let image = gradInput + n &* H &* W &* cin
            var src = col + ((n &* oh &+ oyFirst) &* ow) &* rowLength
            for oy in oyFirst..<oyEnd {
                let iyBase = oy &* s.stride &- s.padding
                for ox in 0..<ow {
                    let ixBase = ox &* s.stride &- s.padding
                    let kx0 = max(0, -ixBase), kx1 = min(k, W &- ixBase)
                    if kx0 < kx1 {
                        let count = (kx1 &- kx0) &* cin
                        for ky in 0..<k {
                            let iy = iyBase &+ ky
                            if iy < lo || iy >= hi { continue }
                            let from = src + (ky &* tapRun &+ kx0 &* cin)
                            let to = image + (iy &* W &+ ixBase &+ kx0) &* cin
                            for i in 0..<count { to[i] += from[i] }
                        }
                    }
                    src += rowLength
                }
            }
        }
    }
}
