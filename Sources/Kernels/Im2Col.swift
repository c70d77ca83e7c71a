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
func im2col(_ s: Conv2DShape, images: Int, input: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
    let k = s.kernel, cin = s.inChannels, H = s.inHeight, W = s.inWidth
    let oh = s.outHeight, ow = s.outWidth
    let rowLength = k &* k &* cin, tapRun = k &* cin
    var dst = col
    for n in 0..<images {
        let image = input + n &* H &* W &* cin
        for oy in 0..<oh {
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
/// `gradInput` (`images` NHWC images) += col2im(`col`). The caller zeroes gradInput first.
func col2imAccumulate(_ s: Conv2DShape, images: Int, col: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
    let k = s.kernel, cin = s.inChannels, H = s.inHeight, W = s.inWidth
    let oh = s.outHeight, ow = s.outWidth
    let rowLength = k &* k &* cin, tapRun = k &* cin
    var src = col
    for n in 0..<images {
        let image = gradInput + n &* H &* W &* cin
        for oy in 0..<oh {
            let iyBase = oy &* s.stride &- s.padding
            for ox in 0..<ow {
                let ixBase = ox &* s.stride &- s.padding
                let kx0 = max(0, -ixBase), kx1 = min(k, W &- ixBase)
                if kx0 < kx1 {
                    let count = (kx1 &- kx0) &* cin
                    for ky in 0..<k {
                        let iy = iyBase &+ ky
                        if iy < 0 || iy >= H { continue }
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
