import CWinogradKernels
import Foundation

// Winograd F(2x2, 3x3) for 3x3, stride-1, padding-1 convolutions (Lavin & Gray 2016).
//
// The output is cut into 2x2 tiles; each tile needs a 4x4 input patch. With
// V = B^T d B (input patch), U = G g G^T (filter) and Y = A^T (U . V) A, one tile
// costs 16 multiplies per (Cin, Cout) pair instead of 36. Over a chunk of T tiles
// the 16 element-wise products become 16 GEMMs, one per transform point p:
// M_p[T, Cout] = V_p[T, Cin] * U_p[Cout, Cin]^T, each split over the compute
// threads by `sgemm`. The transforms run vectorised over channels, which NHWC
// keeps contiguous.
//
// Backward: the input gradient of a 3x3/1/1 convolution is the same convolution
// of the output gradient with the filter rotated by 180 degrees and its in/out
// channels swapped, so it runs through the same routine. The weight gradient is
// the adjoint of the forward's transforms: dU_p = dM_p^T V_p with dM = A dY A^T,
// folded back by dW = G^T dU G (`winogradWeightGradient3x3`).
//
// Up to 256 channels the convolution entry points run `winogradConv3x3Blocked`
// (WinogradBlocked.swift: F(4x4, 3x3), each thread in cache-sized blocks of tiles)
// instead; this point-major form runs the wider layers. The tile transforms run as
// AVX-512 C (Sources/CWinogradKernels) where the CPU has it and the channels are
// a multiple of 16, bit for bit the Swift ones below.
//
// Results differ from im2col + GEMM by float rounding (the transforms add and
// subtract before multiplying), well within float32 tolerance but not bit-identical;
// `MANCS_CONV_ALGORITHM=gemm` turns it off.

// MARK: Algorithm choice

/// How a convolution is computed.
public enum ConvAlgorithm: String, Sendable, CaseIterable {
    /// im2col + GEMM (every shape).
    case gemm
    /// Winograd for forward, input and weight gradient (3x3, stride 1, padding 1 only):
    /// F(4x4, 3x3) in blocks up to 256 channels, F(2x2, 3x3) point-major above.
    case winograd

    /// The algorithm for `shape` under the process's `MANCS_CONV_ALGORITHM` setting:
    /// `gemm` everywhere, `winograd` wherever the shape allows it, or `auto` (the
    /// default): Winograd where the shape allows it and it was measured faster.
    public static func chosen(for shape: Conv2DShape) -> ConvAlgorithm {
        chosen(for: shape, policy: policy)
    }

    static func chosen(for shape: Conv2DShape, policy: Policy) -> ConvAlgorithm {
        guard shape.supportsWinograd else { return .gemm }
        switch policy {
        case .gemm: return .gemm
        case .winograd: return .winograd
        case .auto: return shape.winogradMeasuredFaster ? .winograd : .gemm
        }
    }

    /// The `MANCS_CONV_ALGORITHM` values.
    public enum Policy: String, Sendable, CaseIterable { case gemm, winograd, auto }

    /// `MANCS_CONV_ALGORITHM` (unset or empty: `auto`); throws on any other value.
    public static func policyFromEnvironment() throws -> Policy {
        guard let raw = ProcessInfo.processInfo.environment["MANCS_CONV_ALGORITHM"], !raw.isEmpty else { return .auto }
        guard let p = Policy(rawValue: raw.lowercased()) else { throw ConvAlgorithmError(value: raw) }
        return p
    }

    /// `policyFromEnvironment()`, read once. `MancsNetwork` checks it first, so a bad
    /// value is a readable error there rather than a stop here.
    public static let policy: Policy = {
        do { return try policyFromEnvironment() } catch { fatalError("\(error)") }
    }()
}

/// An unknown `MANCS_CONV_ALGORITHM` value.
public struct ConvAlgorithmError: Error, CustomStringConvertible {
    public let value: String
    public var description: String {
        "MANCS_CONV_ALGORITHM=\(value): expected one of \(ConvAlgorithm.Policy.allCases.map(\.rawValue).joined(separator: ", "))"
    }
}

extension Conv2DShape {
    /// True for the shapes Winograd F(2x2, 3x3) computes: 3x3, stride 1, padding 1.
    public var supportsWinograd: Bool { kernel == 3 && stride == 1 && padding == 1 }

    /// Where `auto` picks Winograd: timed faster on every ResNet-50 stage shape (64 to
    /// 512 channels) at batch 64 on two threads (docs/performance.md, "Winograd for
    /// the 3x3 convolutions"); narrower layers (small test models) were not measured
    /// faster, as their GEMMs' reductions are short, and keep im2col + GEMM.
    var winogradMeasuredFaster: Bool { min(inChannels, outChannels) >= 64 }

    public var tilesHigh: Int { (outHeight + 1) / 2 }
    public var tilesWide: Int { (outWidth + 1) / 2 }

    /// Images per Winograd chunk: as many as keep the tile slots within
    /// `winogradSlotBudget` floats (fewer, larger GEMMs: each of the 16 per chunk
    /// is one handoff between the threads), but at least `winogradMinimumTiles`
    /// GEMM rows; at least one image, at most the batch.
    public var winogradImagesPerChunk: Int {
        let perImage = max(1, tilesHigh * tilesWide)
        let byBudget = Conv2DShape.winogradSlotBudget / (winogradSlotCount * perImage * max(inChannels, outChannels))
        let forRows = (Conv2DShape.winogradMinimumTiles + perImage - 1) / perImage
        return max(1, min(batch, max(byBudget, forRows)))
    }

    /// Fewest tiles (GEMM rows) per Winograd chunk.
    static let winogradMinimumTiles = 256
    /// Floats the tile slots of a chunk aim to stay under (8 MiB): what 256 tiles of
    /// 512 channels need, so narrower layers get more tiles for the same memory.
    static let winogradSlotBudget = 1 << 21

    /// Floats of workspace one Winograd pass over `images` images needs: a row of
    /// zeros (the padding), the transformed filter [16, Cout, Cin], and
    /// `winogradSlotCount` slots of tiles x max(Cin, Cout) (see `winogradConv3x3`).
    func winogradPassCount(images: Int) -> Int {
        let tiles = images * tilesHigh * tilesWide
        return inChannels + 16 * inChannels * outChannels + winogradSlotCount * tiles * max(inChannels, outChannels)
    }

    /// Tile slots: one per transform point, plus one spare per thread that runs points.
    var winogradSlotCount: Int { 16 + winogradMaximumPointParts }

    /// Floats of one Winograd GEMM operand or result at most (`mancs bench`'s GEMM replay).
    public var winogradReplayFloats: Int {
        supportsWinograd ? winogradImagesPerChunk * tilesHigh * tilesWide * max(inChannels, outChannels) : 0
    }

    /// The same shape with input and output channels swapped: the input gradient's convolution.
    var channelsSwapped: Conv2DShape {
        var s = self; swap(&s.inChannels, &s.outChannels); return s
    }

    /// Floats of workspace `conv2DForward`/`conv2DBackward` need with `algorithm`:
    /// with Winograd, the largest of its forward, input-gradient and weight-gradient passes.
    public func workspaceCount(_ algorithm: ConvAlgorithm) -> Int {
        guard algorithm == .winograd, supportsWinograd else { return workspaceCount }
        if let tiling = winogradBlockedTiles {
            return max(winogradBlockedPassCount(tiling), channelsSwapped.winogradBlockedPassCount(tiling),
                       winogradBlockedWeightGradientCount(tiling))
        }
        return max(winogradPassCount(images: winogradImagesPerChunk),
                   channelsSwapped.winogradPassCount(images: winogradImagesPerChunk),
                   winogradWeightGradientCount(images: winogradImagesPerChunk))
    }
}

// MARK: Convolution

/// output[N,H,W,Cout] = conv3x3/1/1(input[N,H,W,Cin], weight) (+ bias), by Winograd.
/// `weight` is OHWI [Cout,3,3,Cin]; with `flipped` it is instead taken as the weight
/// of the transposed convolution ([Cin,3,3,Cout] rotated 180 degrees), which turns
/// an output gradient into the input gradient. `workspace` holds
/// `s.winogradPassCount(images: chunk)` floats.
func winogradConv3x3(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>, imagesPerChunk chunk: Int
) {
    require(s.supportsWinograd, "winogradConv3x3: not a 3x3/1 pad 1 convolution (\(s.summary))")
    require(chunk > 0, "winogradConv3x3: imagesPerChunk must be positive, got \(chunk)")
    let cin = s.inChannels, cout = s.outChannels
    let zeros = workspace
    zeros.update(repeating: 0, count: cin)
    let u = workspace + cin
    // The weight's own [out, 3, 3, in] sizes: (Cout, Cin), or (Cin, Cout) when flipped.
    winogradFilterTransform(weight, outChannels: flipped ? cin : cout, inChannels: flipped ? cout : cin,
                            flipped: flipped, into: u)
    let slots = u + 16 * cin * cout
    let tilesPerImage = s.tilesHigh * s.tilesWide
    let slot = max(cin, cout) * chunk * tilesPerImage
    let imageIn = s.inHeight * s.inWidth * cin, imageOut = s.outHeight * s.outWidth * cout
    // The 16 GEMMs are split over the threads by points, each a single-threaded GEMM
    // (one handoff per chunk instead of one per GEMM), up to `winogradMaximumPointParts`
    // threads; with more, each GEMM is split by `sgemm` instead. The slots form one ring
    // per part: part q's points p read V_p from slot p + q + 1 and write M_p to slot
    // p + q, which held its previous point's V (or is the part's spare slot), so a
    // part never overwrites a V that it or another part has still to read.
    let pointParts = (2...winogradMaximumPointParts).contains(computeThreads) ? computeThreads : 1
    let partOf = (0..<16).map { p in (0..<pointParts).first { partRange(16, part: $0, parts: pointParts).contains(p) }! }
    var n0 = 0
    while n0 < s.batch {
        let images = min(chunk, s.batch - n0)
        let tiles = images * tilesPerImage
        winogradInputTransform(s, images: images, input: input + n0 * imageIn, zeros: zeros, into: slots,
                               pointSlot: { p in (p + partOf[p] + 1) * slot })
        func gemm(_ p: Int, split: Bool) {
            // U_p is [Cout, Cin] forward; flipped, the filter transform leaves it [Cin, Cout].
            let a = slots + (p + partOf[p] + 1) * slot, b = u + p * cin * cout, c = slots + (p + partOf[p]) * slot
            if split {
                sgemm(transA: false, transB: !flipped, m: tiles, n: cout, k: cin, alpha: 1, a: a, lda: cin,
                      b: b, ldb: flipped ? cout : cin, beta: 0, c: c, ldc: cout)
            } else {
                blasSgemm(false, !flipped, tiles, cout, cin, 1, a, cin, b, flipped ? cout : cin, 0, c, cout)
            }
        }
        if pointParts == 1 {
            for p in 0..<16 { gemm(p, split: true) }
        } else {
            forEachPart(work: 16 * tiles * cin * cout) { part, parts in
                // parts is 1 when the pool is busy: then one thread runs every point, in order.
                for p in parts == pointParts ? partRange(16, part: part, parts: parts) : 0..<16 { gemm(p, split: false) }
            }
        }
        winogradOutputTransform(s, images: images, from: slots, pointSlot: { p in (p + partOf[p]) * slot }, bias: bias,
                                output: output + n0 * imageOut)
        n0 += images
    }
}

/// Most threads the 16 Winograd GEMMs of a chunk are split over by points.
let winogradMaximumPointParts = 4

// MARK: Transforms

/// Whether the tile transforms run as AVX-512 C (Sources/CWinogradKernels, bit for
/// bit the Swift code below, 16 channels per instruction) where the channel count
/// is a multiple of 16: on x86-64 builds on CPUs with AVX-512. Set once; tests
/// switch it to compare the two.
enum WinogradTransforms {
    nonisolated(unsafe) static var avx512 = mancs_winograd_avx512_built() != 0 && CPUFeatures.detect().level == .avx512
}

/// `at` (16 or 36 point rows) as the C transforms' `float *const points[]` argument.
@inline(__always)
func withCPointers<P, R>(_ at: [P], _ body: (UnsafePointer<P?>) -> R) -> R {
    at.withUnsafeBufferPointer { body(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: P?.self)) }
}

/// Filter tap (i, j) of output channel k, lanes c0..<c0+n, from an OHWI [K, 3, 3, C]
/// weight; with `flipped`, tap (2 - i, 2 - j): the 180-degree rotation.
@inline(__always)
func winogradFilterTap(_ weight: UnsafePointer<Float>, k: Int, _ i: Int, _ j: Int, flipped: Bool,
                       channels c: Int, c0: Int, _ n: Int) -> SIMD8<Float> {
    let tap = flipped ? (2 - i) * 3 + (2 - j) : i * 3 + j
    return loadLanes(weight + (k * 9 + tap) * c + c0, n)
}

/// The first `n` (at most 8) floats at `p` as a vector (the rest 0), for the Swift transforms.
@inline(__always)
func loadLanes(_ p: UnsafePointer<Float>, _ n: Int) -> SIMD8<Float> { loadVector(p, count: n) }

/// Stores the first `n` (at most 8) lanes of `v` at `p`.
@inline(__always)
func storeLanes(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>, _ n: Int) { storeVector(v, p, count: n) }

/// B^T x for one column (or row) of a 4x4 patch: B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
@inline(__always)
private func bt(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    (a - c, b + c, c - b, b - d)
}

/// G x for one column (or row) of a 3x3 filter: G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
@inline(__always)
private func g3(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    (a, 0.5 * (a + b + c), 0.5 * (a - b + c), c)
}

/// A^T x for one column (or row) of a 4x4 product: A^T = [1 1 1 0; 0 1 -1 -1].
@inline(__always)
private func at2(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>) {
    (a + b + c, b - c - d)
}

/// U[p, k, c] = (G g G^T)[p] with g[i, j] = weight[k, i, j, c] (OHWI, K = outChannels),
/// laid out [16, K, C]. Flipped, g[i, j] = weight[k, 2-i, 2-j, c]: the 180-degree
/// rotation; still laid out [16, K, C], which for the channel-swapped convolution of
/// the input gradient is [16, Cin', Cout'] (see `winogradConv3x3`).
func winogradFilterTransform(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, flipped: Bool,
                             into u: UnsafeMutablePointer<Float>) {
    let c = inChannels, plane = outChannels * c
    parallelRanges(outChannels, workPerItem: 64 * c, align: 1) { ks in
        for k in ks {
            forEachVectorRun(c, width: 8) { c0, n in
                @inline(__always) func g(_ i: Int, _ j: Int) -> SIMD8<Float> {
                    winogradFilterTap(weight, k: k, i, j, flipped: flipped, channels: c, c0: c0, n)
                }
                // q = G g (4 x 3), column by column; then each row of q times G^T.
                let (q00, q10, q20, q30) = g3(g(0, 0), g(1, 0), g(2, 0))
                let (q01, q11, q21, q31) = g3(g(0, 1), g(1, 1), g(2, 1))
                let (q02, q12, q22, q32) = g3(g(0, 2), g(1, 2), g(2, 2))
                let at = u + k * c + c0
                @inline(__always) func row(_ i: Int, _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ d: SIMD8<Float>) {
                    let (x0, x1, x2, x3) = g3(a, b, d)
                    storeLanes(x0, at + (i * 4) * plane, n)
                    storeLanes(x1, at + (i * 4 + 1) * plane, n)
                    storeLanes(x2, at + (i * 4 + 2) * plane, n)
                    storeLanes(x3, at + (i * 4 + 3) * plane, n)
                }
                row(0, q00, q01, q02)
                row(1, q10, q11, q12)
                row(2, q20, q21, q22)
                row(3, q30, q31, q32)
            }
        }
    }
}

/// V[p, t, c] = (B^T d B)[p] for each 2x2 output tile t of `images` images, d the
/// 4x4 input patch at (2ty - 1, 2tx - 1) (out-of-image pixels read `zeros`).
/// V_p starts at into + pointSlot(p), rows of C.
func winogradInputTransform(_ s: Conv2DShape, images: Int, input: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
                            into v: UnsafeMutablePointer<Float>, pointSlot: (Int) -> Int) {
    let at = (0..<16).map { v + pointSlot($0) }
    parallelRanges(images * s.tilesHigh * s.tilesWide, workPerItem: 64 * s.inChannels, align: 1) { tiles in
        winogradInputTransform(s, tiles: tiles, input: input, zeros: zeros, into: at, firstRow: 0)
    }
}

/// The input transform of the tiles `tiles` (numbered over the whole batch from
/// `input`) on the calling thread: tile t's V_p goes to row t - firstRow of `at[p]`.
func winogradInputTransform(_ s: Conv2DShape, tiles: Range<Int>, input: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
                            into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
    let H = s.inHeight, W = s.inWidth, c = s.inChannels
    let th = s.tilesHigh, tw = s.tilesWide
    if WinogradTransforms.avx512 && c % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd_input_avx512(tiles.lowerBound, tiles.upperBound, firstRow, H, W, c, th, tw, input, points)
        }
        return
    }
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 16) { rows in
        for t in tiles {
            let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
            for i in 0..<4 {
                for j in 0..<4 {
                    let y = 2 * ty - 1 + i, x = 2 * tx - 1 + j
                    rows[i * 4 + j] = y >= 0 && y < H && x >= 0 && x < W ? input + ((n * H + y) * W + x) * c : zeros
                }
            }
            forEachVectorRun(c, width: 8) { c0, cnt in
                let offset = (t - firstRow) * c + c0
                @inline(__always) func d(_ i: Int, _ j: Int) -> SIMD8<Float> { loadLanes(rows[i * 4 + j] + c0, cnt) }
                // r = B^T d, column by column; then each row of r times B.
                let (r00, r10, r20, r30) = bt(d(0, 0), d(1, 0), d(2, 0), d(3, 0))
                let (r01, r11, r21, r31) = bt(d(0, 1), d(1, 1), d(2, 1), d(3, 1))
                let (r02, r12, r22, r32) = bt(d(0, 2), d(1, 2), d(2, 2), d(3, 2))
                let (r03, r13, r23, r33) = bt(d(0, 3), d(1, 3), d(2, 3), d(3, 3))
                @inline(__always) func row(_ i: Int, _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ e: SIMD8<Float>, _ f: SIMD8<Float>) {
                    let (x0, x1, x2, x3) = bt(a, b, e, f)
                    storeLanes(x0, at[i * 4] + offset, cnt)
                    storeLanes(x1, at[i * 4 + 1] + offset, cnt)
                    storeLanes(x2, at[i * 4 + 2] + offset, cnt)
                    storeLanes(x3, at[i * 4 + 3] + offset, cnt)
                }
                row(0, r00, r01, r02, r03)
                row(1, r10, r11, r12, r13)
                row(2, r20, r21, r22, r23)
                row(3, r30, r31, r32, r33)
            }
        }
    }
}

/// Output tile t = A^T M A (+ bias), with M[p] the row t of M_p (M_p starts at
/// from + pointSlot(p), rows of Cout); the parts of a 2x2 tile outside the map are dropped.
func winogradOutputTransform(_ s: Conv2DShape, images: Int, from m: UnsafePointer<Float>, pointSlot: (Int) -> Int,
                             bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let at = (0..<16).map { m + pointSlot($0) }
    parallelRanges(images * s.tilesHigh * s.tilesWide, workPerItem: 64 * s.outChannels, align: 1) { tiles in
        winogradOutputTransform(s, tiles: tiles, from: at, firstRow: 0, bias: bias, output: output)
    }
}

/// The output transform of the tiles `tiles` on the calling thread: tile t reads
/// row t - firstRow of `at[p]`.
func winogradOutputTransform(_ s: Conv2DShape, tiles: Range<Int>, from at: [UnsafePointer<Float>], firstRow: Int,
                             bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let oh = s.outHeight, ow = s.outWidth, k = s.outChannels
    let th = s.tilesHigh, tw = s.tilesWide
    if WinogradTransforms.avx512 && k % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd_output_avx512(tiles.lowerBound, tiles.upperBound, firstRow, oh, ow, k, th, tw,
                                         points, bias, output)
        }
        return
    }
    for t in tiles {
        let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
        let rowsValid = min(2, oh - 2 * ty), colsValid = min(2, ow - 2 * tx)
        let out = output + ((n * oh + 2 * ty) * ow + 2 * tx) * k
        forEachVectorRun(k, width: 8) { c0, cnt in
            @inline(__always) func mp(_ i: Int, _ j: Int) -> SIMD8<Float> { loadLanes(at[i * 4 + j] + ((t - firstRow) * k + c0), cnt) }
            // r = A^T M (2 x 4), column by column; then each row of r times A.
            let (r00, r10) = at2(mp(0, 0), mp(1, 0), mp(2, 0), mp(3, 0))
            let (r01, r11) = at2(mp(0, 1), mp(1, 1), mp(2, 1), mp(3, 1))
            let (r02, r12) = at2(mp(0, 2), mp(1, 2), mp(2, 2), mp(3, 2))
            let (r03, r13) = at2(mp(0, 3), mp(1, 3), mp(2, 3), mp(3, 3))
            let b = bias.map { loadLanes($0 + c0, cnt) } ?? .zero
            let (y00, y01) = at2(r00, r01, r02, r03)
            storeLanes(y00 + b, out + c0, cnt)
            if colsValid == 2 { storeLanes(y01 + b, out + k + c0, cnt) }
            if rowsValid == 2 {
                let (y10, y11) = at2(r10, r11, r12, r13)
                storeLanes(y10 + b, out + ow * k + c0, cnt)
                if colsValid == 2 { storeLanes(y11 + b, out + (ow + 1) * k + c0, cnt) }
            }
        }
    }
}

// MARK: Weight gradient

/// gradWeight += dL/dW of a 3x3/1 pad 1 convolution, by Winograd F(2x2, 3x3).
///
/// Forward computes, per transform point p, M_p = V_p U_p^T with U = G g G^T, and
/// Y = A^T M A per tile. So dL/dU_p = dM_p^T V_p summed over tiles, with
/// dM = A dY A^T (the output transform's adjoint; outputs outside the map have
/// zero gradient) and dL/dg = G^T (dL/dU) G. Per chunk: V into 16 slots (the
/// forward's input transform), dM into 16 more, then 16 GEMMs [Cout, T] x [T, Cin]
/// that accumulate into dU [16, Cout, Cin]; after the last chunk dU is folded into
/// gradWeight. The 16 GEMMs are split over the threads by points (each one
/// single-threaded: the points' dU are disjoint), so the result does not depend on
/// the thread count. `workspace` holds `s.winogradWeightGradientCount(images: chunk)` floats.
func winogradWeightGradient3x3(
    _ s: Conv2DShape, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradWeight: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>, imagesPerChunk chunk: Int
) {
    require(s.supportsWinograd, "winogradWeightGradient3x3: not a 3x3/1 pad 1 convolution (\(s.summary))")
    require(chunk > 0, "winogradWeightGradient3x3: imagesPerChunk must be positive, got \(chunk)")
    guard s.batch > 0 else { return }
    let cin = s.inChannels, cout = s.outChannels
    let zeros = workspace
    zeros.update(repeating: 0, count: cin)
    let dU = workspace + cin
    dU.update(repeating: 0, count: 16 * cout * cin)
    let tilesPerImage = s.tilesHigh * s.tilesWide
    let vSlots = dU + 16 * cout * cin
    let vSlot = chunk * tilesPerImage * cin
    let mSlots = vSlots + 16 * vSlot
    let mSlot = chunk * tilesPerImage * cout
    let imageIn = s.inHeight * s.inWidth * cin, imageOut = s.outHeight * s.outWidth * cout
    var n0 = 0
    while n0 < s.batch {
        let images = min(chunk, s.batch - n0)
        let tiles = images * tilesPerImage
        winogradInputTransform(s, images: images, input: input + n0 * imageIn, zeros: zeros, into: vSlots,
                               pointSlot: { p in p * vSlot })
        winogradGradOutputTransform(s, images: images, gradOutput: gradOutput + n0 * imageOut, into: mSlots,
                                    pointSlot: { p in p * mSlot })
        // dU_p[Cout, Cin] += dM_p[T, Cout]^T V_p[T, Cin]
        forEachPart(work: 16 * tiles * cin * cout) { part, parts in
            for p in partRange(16, part: part, parts: parts) {
                blasSgemm(true, false, cout, cin, tiles, 1, mSlots + p * mSlot, cout, vSlots + p * vSlot, cin,
                          1, dU + p * cout * cin, cin)
            }
        }
        n0 += images
    }
    winogradFilterGradientTransform(dU, outChannels: cout, inChannels: cin, accumulatingInto: gradWeight)
}

extension Conv2DShape {
    /// Floats of workspace `winogradWeightGradient3x3` needs for chunks of `images`:
    /// a row of zeros, dU [16, Cout, Cin], and 16 slots each of V [T, Cin] and dM [T, Cout].
    func winogradWeightGradientCount(images: Int) -> Int {
        let tiles = images * tilesHigh * tilesWide
        return inChannels + 16 * inChannels * outChannels + 16 * tiles * (inChannels + outChannels)
    }
}

/// dM_p[t, k] = (A dY A^T)[p] for each 2x2 output tile t of `images` images, dY the
/// tile of the output gradient (zero outside the map). A = [1 0; 1 1; 1 -1; 0 -1].
/// dM_p starts at into + pointSlot(p), rows of Cout.
func winogradGradOutputTransform(_ s: Conv2DShape, images: Int, gradOutput: UnsafePointer<Float>,
                                 into m: UnsafeMutablePointer<Float>, pointSlot: (Int) -> Int) {
    let at = (0..<16).map { m + pointSlot($0) }
    parallelRanges(images * s.tilesHigh * s.tilesWide, workPerItem: 64 * s.outChannels, align: 1) { tiles in
        winogradGradOutputTransform(s, tiles: tiles, gradOutput: gradOutput, into: at, firstRow: 0)
    }
}

/// The output-gradient transform of the tiles `tiles` on the calling thread: tile
/// t's dM_p goes to row t - firstRow of `at[p]`.
func winogradGradOutputTransform(_ s: Conv2DShape, tiles: Range<Int>, gradOutput: UnsafePointer<Float>,
                                 into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
    let oh = s.outHeight, ow = s.outWidth, k = s.outChannels
    let th = s.tilesHigh, tw = s.tilesWide
    if WinogradTransforms.avx512 && k % 16 == 0 {
        withCPointers(at) { points in
            mancs_winograd_grad_output_avx512(tiles.lowerBound, tiles.upperBound, firstRow, oh, ow, k, th, tw, gradOutput, points)
        }
        return
    }
    @inline(__always) func a(_ y0: SIMD8<Float>, _ y1: SIMD8<Float>)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        (y0, y0 + y1, y0 - y1, -y1)
    }
    for t in tiles {
        let n = t / (th * tw), ty = (t / tw) % th, tx = t % tw
        let rowsValid = min(2, oh - 2 * ty), colsValid = min(2, ow - 2 * tx)
        let g = gradOutput + ((n * oh + 2 * ty) * ow + 2 * tx) * k
        forEachVectorRun(k, width: 8) { c0, cnt in
            let offset = (t - firstRow) * k + c0
            let y00 = loadLanes(g + c0, cnt)
            let y01 = colsValid == 2 ? loadLanes(g + k + c0, cnt) : .zero
            let y10 = rowsValid == 2 ? loadLanes(g + ow * k + c0, cnt) : .zero
            let y11 = rowsValid == 2 && colsValid == 2 ? loadLanes(g + (ow + 1) * k + c0, cnt) : .zero
            // r = A dY (4 x 2), column by column; then each row of r times A^T.
            let (r00, r10, r20, r30) = a(y00, y10)
            let (r01, r11, r21, r31) = a(y01, y11)
            @inline(__always) func row(_ i: Int, _ x0: SIMD8<Float>, _ x1: SIMD8<Float>) {
                let (d0, d1, d2, d3) = a(x0, x1)
                storeLanes(d0, at[i * 4] + offset, cnt)
                storeLanes(d1, at[i * 4 + 1] + offset, cnt)
                storeLanes(d2, at[i * 4 + 2] + offset, cnt)
                storeLanes(d3, at[i * 4 + 3] + offset, cnt)
            }
            row(0, r00, r01)
            row(1, r10, r11)
            row(2, r20, r21)
            row(3, r30, r31)
        }
    }
}

/// gradWeight[k, i, j, c] += (G^T dU[., k, c] G)[i, j], dU laid out [16, K, C] as
/// `winogradFilterTransform` lays out U: the adjoint of that transform.
/// G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1].
func winogradFilterGradientTransform(_ dU: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                     accumulatingInto gradWeight: UnsafeMutablePointer<Float>) {
    let c = inChannels, plane = outChannels * c
    @inline(__always) func gt(_ x0: SIMD8<Float>, _ x1: SIMD8<Float>, _ x2: SIMD8<Float>, _ x3: SIMD8<Float>)
        -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
        (x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3)
    }
    parallelRanges(outChannels, workPerItem: 64 * c, align: 1) { ks in
        for k in ks {
            forEachVectorRun(c, width: 8) { c0, n in
                @inline(__always) func d(_ i: Int, _ j: Int) -> SIMD8<Float> { loadLanes(dU + (i * 4 + j) * plane + k * c + c0, n) }
                // q = G^T dU (3 x 4), column by column; then each row of q times G.
                let (q00, q10, q20) = gt(d(0, 0), d(1, 0), d(2, 0), d(3, 0))
                let (q01, q11, q21) = gt(d(0, 1), d(1, 1), d(2, 1), d(3, 1))
                let (q02, q12, q22) = gt(d(0, 2), d(1, 2), d(2, 2), d(3, 2))
                let (q03, q13, q23) = gt(d(0, 3), d(1, 3), d(2, 3), d(3, 3))
                @inline(__always) func row(_ i: Int, _ a: SIMD8<Float>, _ b: SIMD8<Float>, _ e: SIMD8<Float>, _ f: SIMD8<Float>) {
                    let (w0, w1, w2) = gt(a, b, e, f)
                    let base = gradWeight + (k * 9 + i * 3) * c + c0
                    storeLanes(loadLanes(base, n) + w0, base, n)
                    storeLanes(loadLanes(base + c, n) + w1, base + c, n)
                    storeLanes(loadLanes(base + 2 * c, n) + w2, base + 2 * c, n)
                }
                row(0, q00, q01, q02, q03)
                row(1, q10, q11, q12, q13)
                row(2, q20, q21, q22, q23)
            }
        }
    }
}
