import CWinogradKernels

// Winograd F(4x4, 3x3) for 3x3, stride-1, padding-1 convolutions (Lavin & Gray
// 2016, with the points 0, ±1, ±2): 4x4 output tiles from 6x6 input patches, 36
// multiplies per (Cin, Cout) pair and tile of 16 outputs, against 64 for four
// F(2x2, 3x3) tiles and 144 directly. The blocked path (WinogradBlocked.swift)
// runs it, up to 256 channels.
//
//   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
//          0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1]
//   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
//   A^T = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1]
//
// The transforms' coefficients (up to 8 and 1/24) cost some accuracy against
// F(2x2, 3x3): differences from im2col + GEMM of ~5e-6 of the output's scale at
// 64-512 channels (~1e-6 for F(2x2)), far inside what float32 training notices
// (WinogradBlockedTests bound them). The tile transforms
// run as AVX-512 C where the channel count is a multiple of 16
// (Sources/CWinogradKernels, the same operations in the same order, so bit for
// bit this Swift code), Swift elsewhere.

extension Conv2DShape {
    /// 4x4 output tiles per column and row of the output map (F(4x4, 3x3)).
    var tiles4High: Int { (outHeight + 3) / 4 }
    var tiles4Wide: Int { (outWidth + 3) / 4 }
}

// MARK: One-dimensional transforms (a column, then each row, of a tile)

/// B^T x in place on the six values x[0], x[s], ..., x[5s].
@inline(__always)
private func inputTransform6(_ x: UnsafeMutablePointer<SIMD8<Float>>, _ s: Int) {
    let x0 = x[0], x1 = x[s], x2 = x[2 * s], x3 = x[3 * s], x4 = x[4 * s], x5 = x[5 * s]
    let t1 = x4 - 4 * x2, t2 = x3 - 4 * x1, t3 = x4 - x2, t4 = 2 * (x3 - x1)
    x[0] = (x4 + 4 * x0) - 5 * x2
    x[s] = t1 + t2
    x[2 * s] = t1 - t2
    x[3 * s] = t3 + t4
    x[4 * s] = t3 - t4
    x[5 * s] = (x5 + 4 * x1) - 5 * x3
}

/// A^T x: six values x[0], x[s], ..., x[5s] to four, y[0], y[t], y[2t], y[3t].
@inline(__always)
private func outputTransform6(_ x: UnsafePointer<SIMD8<Float>>, _ s: Int, _ y: UnsafeMutablePointer<SIMD8<Float>>, _ t: Int) {
    let s12 = x[s] + x[2 * s], d12 = x[s] - x[2 * s], s34 = x[3 * s] + x[4 * s], d34 = x[3 * s] - x[4 * s]
    y[0] = (x[0] + s12) + s34
    y[t] = d12 + 2 * d34
    y[2 * t] = s12 + 4 * s34
    y[3 * t] = (d12 + 8 * d34) + x[5 * s]
}

/// A y: four values y[0], y[s], y[2s], y[3s] to six, x[0], x[t], ..., x[5t] (the
/// output transform's adjoint, for the output gradient).
@inline(__always)
private func gradOutputTransform6(_ y: UnsafePointer<SIMD8<Float>>, _ s: Int, _ x: UnsafeMutablePointer<SIMD8<Float>>, _ t: Int) {
    let y0 = y[0], y1 = y[s], y2 = y[2 * s], y3 = y[3 * s]
    let e = y0 + y2, o = y1 + y3, e2 = y0 + 4 * y2, o2 = 2 * y1 + 8 * y3
    x[0] = y0
    x[t] = e + o
    x[2 * t] = e - o
    x[3 * t] = e2 + o2
    x[4 * t] = e2 - o2
    x[5 * t] = y3
}

/// G g: three filter taps to six.
@inline(__always)
private func filterTransform6(_ g0: SIMD8<Float>, _ g1: SIMD8<Float>, _ g2: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let sixth: Float = 1.0 / 6, twentyFourth: Float = 1.0 / 24
    return (0.25 * g0, -sixth * ((g0 + g1) + g2), -sixth * ((g0 - g1) + g2),
            twentyFourth * ((g0 + 2 * g1) + 4 * g2), twentyFourth * ((g0 - 2 * g1) + 4 * g2), g2)
}

/// G^T x: six values to three filter taps (the filter transform's adjoint).
@inline(__always)
private func filterGradientTransform6(_ x: UnsafePointer<SIMD8<Float>>, _ s: Int)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let sixth: Float = 1.0 / 6, twelfth: Float = 1.0 / 12, twentyFourth: Float = 1.0 / 24
    let s12 = x[s] + x[2 * s], d21 = x[2 * s] - x[s], s34 = x[3 * s] + x[4 * s], d34 = x[3 * s] - x[4 * s]
    return ((0.25 * x[0] - sixth * s12) + twentyFourth * s34,
            sixth * d21 + twelfth * d34,
            (sixth * s34 - sixth * s12) + x[5 * s])
}

// MARK: Tile transforms

/// V[p, t, c] = (B^T d B)[p] for the 4x4 output tiles `tiles` (numbered over the
/// batch from `input`), d the 6x6 input patch at (4ty - 1, 4tx - 1), 0 outside the
/// image. Tile t's V_p goes to row t - firstRow of `at[p]` (rows of Cin).
func winograd4InputTransform(_ s: Conv2DShape, tiles: Range<Int>, input: UnsafePointer<Float>,
                             into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
    let H = s.inHeight, W = s.inWidth, c = s.inChannels, th = s.tiles4High, tw = s.tiles4Wide
    if WinogradTransforms.avx512 && c % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd4_input_avx512(tiles.lowerBound, tiles.upperBound, firstRow, H, W, c, th, tw, input, points)
        }
        return
    }
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 36) { d in
        let d = d.baseAddress!
        for t in tiles {
            let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
            let offset = (t - firstRow) * c
            forEachVectorRun(c, width: 8) { c0, cnt in
                for i in 0..<6 {
                    let y = 4 * ty - 1 + i
                    for j in 0..<6 {
                        let x = 4 * tx - 1 + j
                        d[i * 6 + j] = y >= 0 && y < H && x >= 0 && x < W ? loadLanes(input + ((n * H + y) * W + x) * c + c0, cnt) : .zero
                    }
                }
                for j in 0..<6 { inputTransform6(d + j, 6) }
                for i in 0..<6 { inputTransform6(d + i * 6, 1) }
                for p in 0..<36 { storeLanes(d[p], at[p] + offset + c0, cnt) }
            }
        }
    }
}

/// Output tile t = A^T M A (+ bias), M[p] row t - firstRow of `at[p]` (rows of
/// Cout); the parts of a 4x4 tile outside the map are dropped.
func winograd4OutputTransform(_ s: Conv2DShape, tiles: Range<Int>, from at: [UnsafePointer<Float>], firstRow: Int,
                              bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let oh = s.outHeight, ow = s.outWidth, k = s.outChannels, th = s.tiles4High, tw = s.tiles4Wide
    if WinogradTransforms.avx512 && k % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd4_output_avx512(tiles.lowerBound, tiles.upperBound, firstRow, oh, ow, k, th, tw,
                                          points, bias, output)
        }
        return
    }
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 36 + 24 + 16) { buffer in
        let m = buffer.baseAddress!, r = m + 36, y = r + 24
        for t in tiles {
            let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
            let rowsValid = min(4, oh - 4 * ty), colsValid = min(4, ow - 4 * tx)
            let out = output + ((n * oh + 4 * ty) * ow + 4 * tx) * k
            let offset = (t - firstRow) * k
            forEachVectorRun(k, width: 8) { c0, cnt in
                for p in 0..<36 { m[p] = loadLanes(at[p] + offset + c0, cnt) }
                for j in 0..<6 { outputTransform6(m + j, 6, r + j, 6) }      // r: 4 x 6
                for i in 0..<4 { outputTransform6(r + i * 6, 1, y + i * 4, 1) }  // y: 4 x 4
                let b = bias.map { loadLanes($0 + c0, cnt) } ?? .zero
                for i in 0..<rowsValid {
                    for j in 0..<colsValid { storeLanes(y[i * 4 + j] + b, out + (i * ow + j) * k + c0, cnt) }
                }
            }
        }
    }
}

/// dM_p[t, k] = (A dY A^T)[p] for the tiles `tiles`, dY the 4x4 tile of the output
/// gradient (0 outside the map); tile t's dM_p goes to row t - firstRow of `at[p]`.
func winograd4GradOutputTransform(_ s: Conv2DShape, tiles: Range<Int>, gradOutput: UnsafePointer<Float>,
                                  into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
    let oh = s.outHeight, ow = s.outWidth, k = s.outChannels, th = s.tiles4High, tw = s.tiles4Wide
    if WinogradTransforms.avx512 && k % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd4_grad_output_avx512(tiles.lowerBound, tiles.upperBound, firstRow, oh, ow, k, th, tw, gradOutput, points)
        }
        return
    }
    withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 16 + 24 + 36) { buffer in
        let y = buffer.baseAddress!, r = y + 16, d = r + 24
        for t in tiles {
            let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
            let rowsValid = min(4, oh - 4 * ty), colsValid = min(4, ow - 4 * tx)
            let g = gradOutput + ((n * oh + 4 * ty) * ow + 4 * tx) * k
            let offset = (t - firstRow) * k
            forEachVectorRun(k, width: 8) { c0, cnt in
                for i in 0..<4 {
                    for j in 0..<4 { y[i * 4 + j] = i < rowsValid && j < colsValid ? loadLanes(g + (i * ow + j) * k + c0, cnt) : .zero }
                }
                for j in 0..<4 { gradOutputTransform6(y + j, 4, r + j, 4) }     // r: 6 x 4
                for i in 0..<6 { gradOutputTransform6(r + i * 4, 1, d + i * 6, 1) }  // d: 6 x 6
                for p in 0..<36 { storeLanes(d[p], at[p] + offset + c0, cnt) }
            }
        }
    }
}

// MARK: Filter transforms

/// U[p, k, c] = (G g G^T)[p], g[i, j] = weight[k, i, j, c] (OHWI, K = outChannels),
/// or weight[k, 2-i, 2-j, c] when `flipped` (the input gradient's rotated filter,
/// as `winogradFilterTransform`); laid out [36, K, C].
func winograd4FilterTransform(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, flipped: Bool,
                              into u: UnsafeMutablePointer<Float>) {
    let c = inChannels, plane = outChannels * c
    parallelRanges(outChannels, workPerItem: 150 * c, align: 1) { ks in
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 18) { q in
            let q = q.baseAddress!  // G g: 6 x 3
            for k in ks {
                forEachVectorRun(c, width: 8) { c0, n in
                    @inline(__always) func g(_ i: Int, _ j: Int) -> SIMD8<Float> {
                        winogradFilterTap(weight, k: k, i, j, flipped: flipped, channels: c, c0: c0, n)
                    }
                    for j in 0..<3 {
                        (q[j], q[3 + j], q[6 + j], q[9 + j], q[12 + j], q[15 + j]) = filterTransform6(g(0, j), g(1, j), g(2, j))
                    }
                    let at = u + k * c + c0
                    for i in 0..<6 {
                        let x = filterTransform6(q[i * 3], q[i * 3 + 1], q[i * 3 + 2])
                        storeLanes(x.0, at + (i * 6) * plane, n)
                        storeLanes(x.1, at + (i * 6 + 1) * plane, n)
                        storeLanes(x.2, at + (i * 6 + 2) * plane, n)
                        storeLanes(x.3, at + (i * 6 + 3) * plane, n)
                        storeLanes(x.4, at + (i * 6 + 4) * plane, n)
                        storeLanes(x.5, at + (i * 6 + 5) * plane, n)
                    }
                }
            }
        }
    }
}

/// gradWeight[k, i, j, c] += (G^T dU[., k, c] G)[i, j], dU laid out [36, K, C]: the
/// adjoint of `winograd4FilterTransform` (not flipped).
func winograd4FilterGradientTransform(_ dU: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                      accumulatingInto gradWeight: UnsafeMutablePointer<Float>) {
    let c = inChannels, plane = outChannels * c
    parallelRanges(outChannels, workPerItem: 150 * c, align: 1) { ks in
        withUnsafeTemporaryAllocation(of: SIMD8<Float>.self, capacity: 36 + 18) { buffer in
            let d = buffer.baseAddress!, q = d + 36  // q = G^T dU: 3 x 6
            for k in ks {
                forEachVectorRun(c, width: 8) { c0, n in
                    for p in 0..<36 { d[p] = loadLanes(dU + p * plane + k * c + c0, n) }
                    for j in 0..<6 { (q[j], q[6 + j], q[12 + j]) = filterGradientTransform6(d + j, 6) }
                    for i in 0..<3 {
                        let (w0, w1, w2) = filterGradientTransform6(q + i * 6, 1)
                        let base = gradWeight + (k * 9 + i * 3) * c + c0
                        storeLanes(loadLanes(base, n) + w0, base, n)
                        storeLanes(loadLanes(base + c, n) + w1, base + c, n)
                        storeLanes(loadLanes(base + 2 * c, n) + w2, base + 2 * c, n)
                    }
                }
            }
        }
    }
}
