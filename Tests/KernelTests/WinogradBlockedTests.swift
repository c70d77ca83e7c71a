import Foundation
import Testing
import TestSupport
@testable import Kernels

// The blocked Winograd path (F(2x2, 3x3) and F(4x4, 3x3) in per-thread blocks of
// tiles) against a direct convolution and the im2col + GEMM path, on several
// thread counts; and the AVX-512 tile transforms against the Swift ones.

/// The Winograd test shapes plus ones whose channels are multiples of 16 (the
/// AVX-512 transforms) with maps that leave partial 4x4 tiles.
let blockedCases: [Conv2DShape] = winogradCases + [
    Conv2DShape(batch: 3, inHeight: 7, inWidth: 6, inChannels: 16, outChannels: 32, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 2, inHeight: 9, inWidth: 5, inChannels: 48, outChannels: 16, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 2, inHeight: 8, inWidth: 8, inChannels: 64, outChannels: 64, kernel: 3, stride: 1, padding: 1),
]

/// Forward, input gradient and weight gradient (accumulated onto `weightStart`) of
/// `s` by the blocked path with `tiling` (nil: im2col + GEMM).
private func blockedPasses(_ s: Conv2DShape, tiling: WinogradTiles?, x: [Float], w: [Float], b: [Float]?, r: [Float],
                           weightStart: [Float]) -> (y: [Float], gX: [Float], gW: [Float]) {
    var y = [Float](repeating: .nan, count: s.outputCount), gX = [Float](repeating: .nan, count: s.inputCount)
    var gW = weightStart
    let count = tiling.map { max(s.winogradBlockedPassCount($0), s.channelsSwapped.winogradBlockedPassCount($0),
                                 s.winogradBlockedWeightGradientCount($0)) } ?? s.workspaceCount
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        y.withUnsafeMutableBufferPointer { yp in gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
            withScratch(count) { ws in
                let bias = b?.withUnsafeBufferPointer { $0.baseAddress! }
                guard let tiling else {
                    conv2DForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: bias, output: yp.baseAddress!,
                                  workspace: ws, algorithm: .gemm)
                    conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                                   gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!, gradBias: nil,
                                   workspace: ws, algorithm: .gemm)
                    return
                }
                winogradConv3x3Blocked(s, tiling: tiling, input: xp.baseAddress!, weight: wp.baseAddress!, flipped: false,
                                       bias: bias, output: yp.baseAddress!, workspace: ws)
                winogradConv3x3Blocked(s.channelsSwapped, tiling: tiling, input: rp.baseAddress!, weight: wp.baseAddress!,
                                       flipped: true, bias: nil, output: gx.baseAddress!, workspace: ws)
                winogradWeightGradient3x3Blocked(s, tiling: tiling, input: xp.baseAddress!, gradOutput: rp.baseAddress!,
                                                 gradWeight: gw.baseAddress!, workspace: ws)
            }
        } } }
    } } }
    return (y, gX, gW)
}

@Test("blocked Winograd F(2x2) and F(4x4): forward equals a direct convolution, gradients equal im2col + GEMM's, on 1-3 threads",
      arguments: blockedCases.indices)
func winogradBlockedMatches(caseIndex: Int) {
    let s = blockedCases[caseIndex]
    var rng = SplitMix64(seed: UInt64(500 + caseIndex))
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5), b = rng.array(s.outChannels)
    let r = rng.array(s.outputCount), weightStart = rng.array(s.weightCount)
    let naive = naiveConv(s, input: x, weight: w, bias: b).map(Float.init)
    let gemm = blockedPasses(s, tiling: nil, x: x, w: w, b: b, r: r, weightStart: weightStart)
    let gemmGradOnly = zip(gemm.gW, weightStart).map { $0 - $1 }
    let saved = ComputePool.minimumWork
    ComputePool.minimumWork = 1
    defer { setComputeThreads(1); ComputePool.minimumWork = saved }
    for tiling in [WinogradTiles.f2x2, .f4x4] {
        // F(4x4)'s larger transform coefficients cost accuracy; both stay far inside float32 training noise.
        let bound: Float = tiling == .f2x2 ? 1e-5 : 4e-5
        var byThreads: [(y: [Float], gX: [Float], gW: [Float])] = []
        for threads in [1, 2, 3] {
            setComputeThreads(threads)
            let run = blockedPasses(s, tiling: tiling, x: x, w: w, b: b, r: r, weightStart: weightStart)
            let what = "\(s.summary) \(tiling) \(threads) threads"
            #expect(relativeWorst(run.y, naive) < bound, "\(what): forward \(relativeWorst(run.y, naive))")
            #expect(relativeWorst(run.gX, gemm.gX) < bound, "\(what): gradInput \(relativeWorst(run.gX, gemm.gX))")
            let gradOnly = zip(run.gW, weightStart).map { $0 - $1 }
            #expect(relativeWorst(gradOnly, gemmGradOnly) < 10 * bound, "\(what): gradWeight \(relativeWorst(gradOnly, gemmGradOnly))")
            byThreads.append(run)
        }
        // Each output is one GEMM row and one tile transform whatever the split: bit for
        // bit the same on any thread count; the weight gradient sums the threads' parts.
        for run in byThreads.dropFirst() {
            #expect(run.y == byThreads[0].y && run.gX == byThreads[0].gX, "\(s.summary) \(tiling)")
            #expect(relativeWorst(run.gW, byThreads[0].gW) < 1e-5, "\(s.summary) \(tiling)")
        }
    }
}

@Test("blocked Winograd F(4x4) walking several blocks per thread (six-tile blocks) equals im2col + GEMM, on 1-2 threads")
func winogradBlockedSeveralBlocks() {
    // 2 x 3 x 3 = 18 tiles: three blocks on one thread, 6 + 3 on each of two. At full
    // size a thread walks many blocks (54 tiles each at 256 channels); the shapes above
    // fit in one.
    let s = Conv2DShape(batch: 2, inHeight: 12, inWidth: 12, inChannels: 64, outChannels: 32, kernel: 3, stride: 1, padding: 1)
    var rng = SplitMix64(seed: 77)
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5), b = rng.array(s.outChannels)
    let r = rng.array(s.outputCount), weightStart = rng.array(s.weightCount)
    let gemm = blockedPasses(s, tiling: nil, x: x, w: w, b: b, r: r, weightStart: weightStart)
    let gemmGradOnly = zip(gemm.gW, weightStart).map { $0 - $1 }
    let savedFloats = Conv2DShape.winogradBlockFloats, savedWork = ComputePool.minimumWork
    defer { Conv2DShape.winogradBlockFloats = savedFloats; ComputePool.minimumWork = savedWork; setComputeThreads(1) }
    Conv2DShape.winogradBlockFloats = 36 * (64 + 32) * 6
    ComputePool.minimumWork = 1
    #expect(s.winogradBlockTiles(.f4x4) == 6 && s.channelsSwapped.winogradBlockTiles(.f4x4) == 6)
    for threads in [1, 2] {
        setComputeThreads(threads)
        let run = blockedPasses(s, tiling: .f4x4, x: x, w: w, b: b, r: r, weightStart: weightStart)
        #expect(relativeWorst(run.y, gemm.y) < 4e-5, "\(threads) threads: forward \(relativeWorst(run.y, gemm.y))")
        #expect(relativeWorst(run.gX, gemm.gX) < 4e-5, "\(threads) threads: gradInput \(relativeWorst(run.gX, gemm.gX))")
        let gradOnly = zip(run.gW, weightStart).map { $0 - $1 }
        #expect(relativeWorst(gradOnly, gemmGradOnly) < 4e-4, "\(threads) threads: gradWeight \(relativeWorst(gradOnly, gemmGradOnly))")
    }
}

@Test("the conv entry points run blocked F(4x4) up to 256 channels, point-major F(2x2) above")
func winogradBlockedChoice() {
    func shape(_ c: Int) -> Conv2DShape {
        Conv2DShape(batch: 64, inHeight: 16, inWidth: 8, inChannels: c, outChannels: c, kernel: 3, stride: 1, padding: 1)
    }
    #expect(shape(64).winogradBlockedTiles == .f4x4)
    #expect(shape(128).winogradBlockedTiles == .f4x4)
    #expect(shape(256).winogradBlockedTiles == .f4x4)
    #expect(shape(512).winogradBlockedTiles == nil)
    #expect(Conv2DShape(batch: 64, inHeight: 16, inWidth: 8, inChannels: 256, outChannels: 512, kernel: 3, stride: 1,
                        padding: 1).winogradBlockedTiles == nil)
    var strided = shape(64); strided.stride = 2
    #expect(strided.winogradBlockedTiles == nil)
    // The workspace covers the blocked passes where they run, the point-major ones elsewhere.
    let s = shape(128)
    #expect(s.workspaceCount(.winograd) >= s.winogradBlockedWeightGradientCount(.f4x4))
    #expect(s.workspaceCount(.winograd) >= s.winogradBlockedPassCount(.f4x4))
    #expect(shape(512).workspaceCount(.winograd) >= shape(512).winogradPassCount(images: shape(512).winogradImagesPerChunk))
}

/// Runs `body` with the Swift tile transforms and with the AVX-512 ones, and returns both results.
private func bothTransforms(_ body: () -> [Float]) -> (swift: [Float], avx512: [Float]) {
    let saved = WinogradTransforms.avx512
    defer { WinogradTransforms.avx512 = saved }
    WinogradTransforms.avx512 = false
    let swift = body()
    WinogradTransforms.avx512 = true
    return (swift, body())
}

@Test("AVX-512 tile transforms (F(2x2) and F(4x4): input, output with bias, output gradient) are bit for bit the Swift ones",
      .enabled(if: avx512TransformsAvailable(), "needs an x86-64 CPU with AVX-512"))
func winogradAVX512TransformsExact() {
    for s in blockedCases where s.inChannels % 16 == 0 && s.outChannels % 16 == 0 {
        var rng = SplitMix64(seed: 77)
        let x = rng.array(s.inputCount), g = rng.array(s.outputCount), bias = rng.array(s.outChannels)
        for tiling in [WinogradTiles.f2x2, .f4x4] {
            let tiles = s.batch * tiling.tilesHigh(s) * tiling.tilesWide(s), points = tiling.points
            // Tiles from 1 on, written from row 0 (firstRow 1), as a block that does not start the batch.
            let range = 1..<tiles, rows = tiles - 1
            let zeros = [Float](repeating: 0, count: s.inChannels)
            func slots(_ columns: Int, _ fill: (([UnsafeMutablePointer<Float>]) -> Void)) -> [Float] {
                var v = [Float](repeating: .nan, count: points * rows * columns)
                v.withUnsafeMutableBufferPointer { vp in fill((0..<points).map { vp.baseAddress! + $0 * rows * columns }) }
                return v
            }
            let input = bothTransforms {
                slots(s.inChannels) { at in
                    tiling.inputTransform(s, tiles: range, input: x, zeros: zeros, into: at, firstRow: 1)
                }
            }
            #expect(input.swift == input.avx512, "\(s.summary) \(tiling): input transform")
            let gradOutput = bothTransforms {
                slots(s.outChannels) { at in tiling.gradOutputTransform(s, tiles: range, gradOutput: g, into: at, firstRow: 1) }
            }
            #expect(gradOutput.swift == gradOutput.avx512, "\(s.summary) \(tiling): output-gradient transform")
            // The output transform of the transformed gradient (any values serve), with a bias.
            let m = gradOutput.swift
            let output = bothTransforms {
                var y = [Float](repeating: .nan, count: s.outputCount)
                m.withUnsafeBufferPointer { mp in y.withUnsafeMutableBufferPointer { yp in
                    let at = (0..<points).map { UnsafePointer(mp.baseAddress! + $0 * rows * s.outChannels) }
                    tiling.outputTransform(s, tiles: range, from: at, firstRow: 1, bias: bias, output: yp.baseAddress!)
                } }
                return y
            }
            // NaN where tile 0 was skipped: compare bit patterns.
            #expect(output.swift.map(\.bitPattern) == output.avx512.map(\.bitPattern), "\(s.summary) \(tiling): output transform")
        }
    }
}

/// Whether this machine runs the AVX-512 transforms (test condition).
func avx512TransformsAvailable() -> Bool { WinogradTransforms.avx512 }
