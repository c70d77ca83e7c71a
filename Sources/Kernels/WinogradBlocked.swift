import Foundation

// Winograd in cache-sized blocks of tiles, for the narrow layers.
//
// `winogradConv3x3` transforms a whole chunk of images into 16 point slots, runs
// the 16 GEMMs, then transforms back: each stage streams the slots through memory.
// For 64 or 128 channels a GEMM does only 64-128 multiply-adds per float it reads,
// so those passes are bound by memory bandwidth, not arithmetic (64x32x64 at batch
// 64: 59 ms forward, 21 ms of it the GEMMs' arithmetic at the sgemm rate).
//
// Here every thread takes its own run of tiles and walks it in blocks of
// `winogradBlockTiles`: input transform of the block into point slots, one GEMM
// per point on them, output transform, so a block's transformed data is reread
// from cache instead of memory (4 MiB per thread: L2 and the Xeon's large L3).
// The transformed filter U [points, Cout, Cin] is shared and read by every
// block, so the path is taken where U is small enough (`winogradBlockedTiles`: up
// to 256 channels), with F(4x4, 3x3) (Winograd4x4.swift: 36 points per 16 outputs,
// 2.25x fewer multiplies than F(2x2, 3x3)). Tests also run it with F(2x2, 3x3)
// tiles, as a cross-check of the blocking.
//
// The weight gradient works the same way: V and dM of a block, then the GEMMs
// dU_p += dM_p^T V_p into the thread's own dU; the threads' dU are summed in
// order at the end (so the result depends on the thread count by rounding only).

/// The tile size of a Winograd algorithm: F(2x2, 3x3) or F(4x4, 3x3).
public enum WinogradTiles: Int, Sendable {
    case f2x2 = 2, f4x4 = 4

    /// Transform points per tile: (tile + 2)^2.
    var points: Int { (rawValue + 2) * (rawValue + 2) }

    func tilesHigh(_ s: Conv2DShape) -> Int { self == .f2x2 ? s.tilesHigh : s.tiles4High }
    func tilesWide(_ s: Conv2DShape) -> Int { self == .f2x2 ? s.tilesWide : s.tiles4Wide }

    func filterTransform(_ weight: UnsafePointer<Float>, outChannels: Int, inChannels: Int, flipped: Bool,
                         into u: UnsafeMutablePointer<Float>) {
        switch self {
        case .f2x2: winogradFilterTransform(weight, outChannels: outChannels, inChannels: inChannels, flipped: flipped, into: u)
        case .f4x4: winograd4FilterTransform(weight, outChannels: outChannels, inChannels: inChannels, flipped: flipped, into: u)
        }
    }

    func filterGradientTransform(_ dU: UnsafePointer<Float>, outChannels: Int, inChannels: Int,
                                 accumulatingInto gradWeight: UnsafeMutablePointer<Float>) {
        switch self {
        case .f2x2: winogradFilterGradientTransform(dU, outChannels: outChannels, inChannels: inChannels, accumulatingInto: gradWeight)
        case .f4x4: winograd4FilterGradientTransform(dU, outChannels: outChannels, inChannels: inChannels, accumulatingInto: gradWeight)
        }
    }

    func inputTransform(_ s: Conv2DShape, tiles: Range<Int>, input: UnsafePointer<Float>, zeros: UnsafePointer<Float>,
                        into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
        switch self {
        case .f2x2: winogradInputTransform(s, tiles: tiles, input: input, zeros: zeros, into: at, firstRow: firstRow)
        case .f4x4: winograd4InputTransform(s, tiles: tiles, input: input, into: at, firstRow: firstRow)
        }
    }

    func outputTransform(_ s: Conv2DShape, tiles: Range<Int>, from at: [UnsafePointer<Float>], firstRow: Int,
                         bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
        switch self {
        case .f2x2: winogradOutputTransform(s, tiles: tiles, from: at, firstRow: firstRow, bias: bias, output: output)
        case .f4x4: winograd4OutputTransform(s, tiles: tiles, from: at, firstRow: firstRow, bias: bias, output: output)
        }
    }

    func gradOutputTransform(_ s: Conv2DShape, tiles: Range<Int>, gradOutput: UnsafePointer<Float>,
                             into at: [UnsafeMutablePointer<Float>], firstRow: Int) {
        switch self {
        case .f2x2: winogradGradOutputTransform(s, tiles: tiles, gradOutput: gradOutput, into: at, firstRow: firstRow)
        case .f4x4: winograd4GradOutputTransform(s, tiles: tiles, gradOutput: gradOutput, into: at, firstRow: firstRow)
        }
    }
}

extension Conv2DShape {
    /// The tiles of the blocked path for this shape, or nil where `winogradConv3x3`
    /// (point-major F(2x2, 3x3)) runs: F(4x4, 3x3) up to 256 channels.
    public var winogradBlockedTiles: WinogradTiles? {
        guard supportsWinograd else { return nil }
        if let forced = Conv2DShape.forcedBlockedTiles { return forced == 0 ? nil : WinogradTiles(rawValue: forced) }
        return inChannels * outChannels <= Conv2DShape.winogradBlockedChannelProduct ? .f4x4 : nil
    }

    /// Largest Cin x Cout the blocked path takes: up to 256 channels (stages 1-3 of
    /// ResNet-50). At 512 the transformed filter (36 x 512 x 512 floats, 38 MB) is
    /// too big to be read again by every block, and the point-major F(2x2, 3x3) of
    /// `winogradConv3x3` was faster. At 256, blocks of 54 tiles measured ~69 ms
    /// forward + backward per convolution against ~91 point-major (two threads,
    /// alternating), ~0.1 s per step over stage 3's five; each further thread's
    /// weight gradient needs its own 9 MB dU, which leaves the full-size step 7.7 MB
    /// under its 3 GiB budget (docs/performance.md).
    static let winogradBlockedChannelProduct = 256 * 256

    /// Tests and timing: 0 turns the blocked path off, 2 or 4 forces F(2x2) or F(4x4) blocks.
    nonisolated(unsafe) static var forcedBlockedTiles: Int?

    /// Tiles per block: the block's point slots of V [T, Cin] and M [T, Cout] within
    /// `winogradBlockFloats`, at most 240; a multiple of 6, the GEMM kernel's row tile.
    func winogradBlockTiles(_ tiles: WinogradTiles) -> Int {
        let t = Conv2DShape.winogradBlockFloats / (tiles.points * (inChannels + outChannels))
        return max(6, min(240, t / 6 * 6))
    }

    /// Floats of one thread's block slots (4 MiB): more than L2 holds, which measured
    /// faster than L2-sized blocks (the GEMMs get more rows per packed filter, and
    /// the Xeon's L3 is large); see docs/performance.md.
    nonisolated(unsafe) static var winogradBlockFloats = 1 << 20  // tests shrink it to force several blocks

    /// Floats of one thread's slots (V and M, or V and dM) in the blocked path.
    func winogradBlockSlotCount(_ tiles: WinogradTiles) -> Int {
        tiles.points * winogradBlockTiles(tiles) * (inChannels + outChannels)
    }

    /// Floats of workspace the blocked forward (or input gradient) needs: a row of
    /// zeros, U, and the calling thread's slots (other threads take theirs from the
    /// compute pool's scratch, so memory follows the thread count).
    func winogradBlockedPassCount(_ tiles: WinogradTiles) -> Int {
        inChannels + tiles.points * inChannels * outChannels + winogradBlockSlotCount(tiles)
    }

    /// Floats of workspace the blocked weight gradient needs: a row of zeros, dU, and
    /// the calling thread's slots (other threads' slots and dU: the pool's scratch).
    func winogradBlockedWeightGradientCount(_ tiles: WinogradTiles) -> Int {
        inChannels + tiles.points * inChannels * outChannels + winogradBlockSlotCount(tiles)
    }
}

/// Runs `body(part, parts, area)` on the compute threads, each with its own `perPart`
/// floats: part 0's at `own`, the others' in the pool's scratch. Then, still on the
/// pool, `finally(parts, areaOf)` (e.g. to combine what the parts left in their areas).
private func forEachPartWithArea(
    work: Int, perPart: Int, own: UnsafeMutablePointer<Float>,
    _ body: (_ part: Int, _ parts: Int, _ area: UnsafeMutablePointer<Float>) -> Void,
    finally: (_ parts: Int, _ areaOf: (Int) -> UnsafeMutablePointer<Float>) -> Void = { _, _ in }
) {
    withComputePool(work: work) { pool in
        guard let pool else { body(0, 1, own); finally(1) { _ in own }; return }
        let areaOf = partAreas(pool, perPart: perPart, own: own)
        pool.dispatch { part, parts in body(part, parts, areaOf(part)) }
        finally(pool.size, areaOf)
    }
}

/// Each part's `perPart` floats: part 0's at `own`, the others' in the pool's scratch.
private func partAreas(_ pool: ComputePool, perPart: Int, own: UnsafeMutablePointer<Float>)
    -> (Int) -> UnsafeMutablePointer<Float> {
    let others = pool.scratch(floats: max(1, (pool.size - 1) * perPart))
    return { part in part == 0 ? own : others + (part - 1) * perPart }
}

/// Runs `body(blocks, area)` for the `PieceSchedule` pieces of 0..<blocks on the compute
/// threads (`dispatchPieces`: a thread that finishes its share takes pieces from the
/// back of a slower thread's), each thread with its own `perPart` floats, as
/// `forEachPartWithArea`. For blocks that are independent of each other.
private func forEachPieceWithArea(
    blocks: Int, work: Int, perPart: Int, own: UnsafeMutablePointer<Float>,
    _ body: (_ blocks: Range<Int>, _ area: UnsafeMutablePointer<Float>) -> Void
) {
    withComputePool(work: work) { pool in
        guard let pool else { body(0..<blocks, own); return }
        let areaOf = partAreas(pool, perPart: perPart, own: own)
        let schedule = PieceSchedule(blocks, parts: pool.size)
        pool.dispatchPieces(schedule) { piece, part in body(schedule.range(piece), areaOf(part)) }
    }
}

/// `winogradConv3x3` (same arguments and result, to rounding with F(4x4, 3x3)) in
/// per-thread blocks of tiles. `workspace` holds `s.winogradBlockedPassCount(tiling)` floats.
func winogradConv3x3Blocked(
    _ s: Conv2DShape, tiling: WinogradTiles, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>
) {
    require(s.supportsWinograd, "winogradConv3x3Blocked: not a 3x3/1 pad 1 convolution (\(s.summary))")
    let cin = s.inChannels, cout = s.outChannels, points = tiling.points
    let zeros = workspace
    zeros.update(repeating: 0, count: cin)
    let u = workspace + cin
    tiling.filterTransform(weight, outChannels: flipped ? cin : cout, inChannels: flipped ? cout : cin,
                           flipped: flipped, into: u)
    let blockTiles = s.winogradBlockTiles(tiling)
    let tiles = s.batch * tiling.tilesHigh(s) * tiling.tilesWide(s)
    let blocks = (tiles + blockTiles - 1) / blockTiles
    // Blocks write only their own tiles' outputs: shared as pieces (a slower thread runs fewer).
    forEachPieceWithArea(blocks: blocks, work: points * tiles * cin * cout, perPart: s.winogradBlockSlotCount(tiling),
                         own: u + points * cin * cout) { blockRange, v in
        let m = v + points * blockTiles * cin
        let vAt = (0..<points).map { v + $0 * blockTiles * cin }
        let mAt = (0..<points).map { m + $0 * blockTiles * cout }
        let mRead = mAt.map { UnsafePointer($0) }
        for b in blockRange {
            let t0 = b * blockTiles, t1 = min(tiles, t0 + blockTiles)
            tiling.inputTransform(s, tiles: t0..<t1, input: input, zeros: zeros, into: vAt, firstRow: t0)
            for p in 0..<points {
                // U_p is [Cout, Cin] forward; flipped, the filter transform leaves it [Cin, Cout].
                blasSgemm(false, !flipped, t1 - t0, cout, cin, 1, vAt[p], cin,
                          u + p * cin * cout, flipped ? cout : cin, 0, mAt[p], cout)
            }
            tiling.outputTransform(s, tiles: t0..<t1, from: mRead, firstRow: t0, bias: bias, output: output)
        }
    }
}

/// `winogradWeightGradient3x3` (gradWeight += dL/dW) in per-thread blocks of tiles.
/// `workspace` holds `s.winogradBlockedWeightGradientCount(tiling)` floats.
func winogradWeightGradient3x3Blocked(
    _ s: Conv2DShape, tiling: WinogradTiles, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
    gradWeight: UnsafeMutablePointer<Float>, workspace: UnsafeMutablePointer<Float>
) {
    require(s.supportsWinograd, "winogradWeightGradient3x3Blocked: not a 3x3/1 pad 1 convolution (\(s.summary))")
    guard s.batch > 0 else { return }
    let cin = s.inChannels, cout = s.outChannels, points = tiling.points
    let zeros = workspace
    zeros.update(repeating: 0, count: cin)
    let blockTiles = s.winogradBlockTiles(tiling)
    let filterFloats = points * cout * cin
    let dU = workspace + cin
    let tiles = s.batch * tiling.tilesHigh(s) * tiling.tilesWide(s)
    let blocks = (tiles + blockTiles - 1) / blockTiles
    // Part 0 accumulates into dU, every other part into its own dU after its slots;
    // those are added to dU in part order at the end.
    let slotFloats = s.winogradBlockSlotCount(tiling)
    forEachPartWithArea(work: points * tiles * cin * cout, perPart: slotFloats + filterFloats, own: dU + filterFloats,
        { part, parts, v in
            let myDU = part == 0 ? dU : v + slotFloats
            myDU.update(repeating: 0, count: filterFloats)
            let m = v + points * blockTiles * cin
            let vAt = (0..<points).map { v + $0 * blockTiles * cin }
            let mAt = (0..<points).map { m + $0 * blockTiles * cout }
            for b in partRange(blocks, part: part, parts: parts) {
                let t0 = b * blockTiles, t1 = min(tiles, t0 + blockTiles)
                tiling.inputTransform(s, tiles: t0..<t1, input: input, zeros: zeros, into: vAt, firstRow: t0)
                tiling.gradOutputTransform(s, tiles: t0..<t1, gradOutput: gradOutput, into: mAt, firstRow: t0)
                // dU_p[Cout, Cin] += dM_p[T, Cout]^T V_p[T, Cin]
                for p in 0..<points {
                    blasSgemm(true, false, cout, cin, t1 - t0, 1, mAt[p], cout, vAt[p], cin, 1, myDU + p * cout * cin, cin)
                }
            }
        },
        finally: { parts, areaOf in
            for part in 1..<max(1, parts) {
                let other = UnsafePointer(areaOf(part) + slotFloats)
                for i in 0..<filterFloats { dU[i] += other[i] }
            }
        })
    tiling.filterGradientTransform(dU, outChannels: cout, inChannels: cin, accumulatingInto: gradWeight)
}

/// The GEMMs alone of one blocked forward, input gradient and weight gradient of `s`
/// (same shapes, blocks and thread split), on scratch data: `mancs bench` splits the
/// convolutions' time into GEMMs and transforms with it. Nothing where `s` does not
/// run blocked.
public func replayWinogradBlockedGEMMs(_ s: Conv2DShape) {
    guard let tiling = s.winogradBlockedTiles else { return }
    let cin = s.inChannels, cout = s.outChannels, points = tiling.points
    let blockTiles = s.winogradBlockTiles(tiling)
    let tiles = s.batch * tiling.tilesHigh(s) * tiling.tilesWide(s)
    let blocks = (tiles + blockTiles - 1) / blockTiles
    let filterFloats = points * cin * cout, perPart = s.winogradBlockSlotCount(tiling) + filterFloats
    let u = UnsafeMutablePointer<Float>.allocate(capacity: filterFloats + perPart)
    defer { u.deallocate() }
    u.initialize(repeating: 0.01, count: filterFloats + perPart)
    forEachPartWithArea(work: points * tiles * cin * cout, perPart: perPart, own: u + filterFloats) { part, parts, v in
        if part != 0 { v.initialize(repeating: 0.01, count: perPart) }
        let m = v + points * blockTiles * cin, dU = v + s.winogradBlockSlotCount(tiling)
        for b in partRange(blocks, part: part, parts: parts) {
            let rows = min(tiles, (b + 1) * blockTiles) - b * blockTiles
            for p in 0..<points {
                let vp = v + p * blockTiles * cin, mp = m + p * blockTiles * cout, up = u + p * cin * cout
                blasSgemm(false, true, rows, cout, cin, 1, vp, cin, up, cin, 0, mp, cout)
                blasSgemm(false, false, rows, cin, cout, 1, mp, cout, up, cin, 0, vp, cin)
                blasSgemm(true, false, cout, cin, rows, 1, mp, cout, vp, cin, 1, dU + p * cin * cout, cin)
            }
        }
    }
}
