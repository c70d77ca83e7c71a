import Foundation
import Testing
import TestSupport
@testable import Kernels

// Every kernel that splits its work over the compute threads must give the result
// of one thread: bit for bit where each output is formed by the same operations in
// the same order (elementwise, pooling, im2col, col2im), to float rounding where
// partial sums are merged differently (the GEMM reduction split, BatchNorm
// statistics), and for row/column GEMM splits bit for bit the parts' own BLAS calls
// (whether those equal the unsplit call is up to the BLAS kernels). Each case runs
// with 1 thread, then 2 and 3.

/// Runs `body` once per thread count, returning its results; restores one thread.
/// Every case is split however small, and must actually have been split.
private func underThreadCounts<T>(_ counts: [Int] = [1, 2, 3], _ body: () -> T) -> [T] {
    let minimumWork = ComputePool.minimumWork
    ComputePool.minimumWork = 1
    defer { setComputeThreads(1); ComputePool.minimumWork = minimumWork }
    return counts.map { n in
        setComputeThreads(n)
        #expect(computeThreads == n)
        let before = ComputePool.shared?.dispatched.load(ordering: .relaxed) ?? 0
        let result = body()
        if n > 1 { #expect(ComputePool.shared!.dispatched.load(ordering: .relaxed) > before, "nothing was split") }
        return result
    }
}

private func maxRelativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    let scale = max(a.map(abs).max() ?? 0, 1e-30)
    return zip(a, b).map { abs($0 - $1) }.max()! / scale
}

private func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, beta: Float, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    let a = rng.array(m * k), b = rng.array(k * n)
    var c = rng.array(m * n)
    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
        sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5,
              a: ap.baseAddress!, lda: transA ? m : k, b: bp.baseAddress!, ldb: transB ? k : n,
              beta: beta, c: cp.baseAddress!, ldc: n)
    } } }
    return c
}

/// `gemm`'s product computed as the row or column split of `sgemm` defines it: one
/// single-threaded BLAS call per piece (`PieceSchedule`, 16-aligned bounds), one after the other.
private func gemmInParts(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, beta: Float, seed: UInt64,
                         parts: Int) -> [Float] {
    var rng = SplitMix64(seed: seed)
    let a = rng.array(m * k), b = rng.array(k * n)
    var c = rng.array(m * n)
    let lda = transA ? m : k, ldb = transB ? k : n
    a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
        let a = ap.baseAddress!, b = bp.baseAddress!, c = cp.baseAddress!
        let bounds = PieceSchedule(m >= n ? m : n, parts: parts, align: 16, minPiece: 1024).bounds
        for piece in 0..<bounds.count - 1 {
            let range = bounds[piece]..<bounds[piece + 1]
            if m >= n {
                let rows = range
                guard !rows.isEmpty else { continue }
                blasSgemm(transA, transB, rows.count, n, k, 0.5, transA ? a + rows.lowerBound : a + rows.lowerBound * lda,
                          lda, b, ldb, beta, c + rows.lowerBound * n, n)
            } else {
                let cols = range
                guard !cols.isEmpty else { continue }
                blasSgemm(transA, transB, m, cols.count, k, 0.5, a, lda,
                          transB ? b + cols.lowerBound * ldb : b + cols.lowerBound, ldb, beta, c + cols.lowerBound, n)
            }
        }
    } } }
    return c
}

@Suite(.serialized)
struct ComputeThreadsTests {
    @Test("partRange covers 0..<count with disjoint aligned ranges", arguments: [0, 1, 15, 16, 17, 100, 1000])
    func partRanges(count: Int) {
        for parts in 1...5 {
            for align in [1, 16, 64] {
                let ranges = (0..<parts).map { partRange(count, part: $0, parts: parts, align: align) }
                #expect(ranges.first?.lowerBound == 0)
                #expect(ranges.last?.upperBound == count)
                for (r, next) in zip(ranges, ranges.dropFirst()) {
                    #expect(r.upperBound == next.lowerBound)
                    #expect(r.upperBound % align == 0 || r.upperBound == count)
                }
            }
        }
    }

    @Test("piece schedules cover 0..<count in order, aligned, each thread's share shrinking to its end",
          arguments: [0, 1, 15, 16, 17, 100, 1000, 131_072])
    func pieceSchedules(count: Int) {
        for parts in 1...4 {
            for align in [1, 16, 64] {
                for minPiece in [1, 1024] {
                    let s = PieceSchedule(count, parts: parts, align: align, minPiece: minPiece)
                    let b = s.bounds
                    #expect(b.first == 0 && b.last == count)
                    #expect(zip(b, b.dropFirst()).allSatisfy { $0 <= $1 }, "\(b)")
                    #expect(b.dropFirst().dropLast().allSatisfy { $0 % align == 0 || $0 == count })
                    #expect(s.homes.count == parts + 1 && s.homes.first == 0 && s.homes.last == s.pieces)
                    // Each part's pieces cover exactly its usual share.
                    let units = (count + align - 1) / align
                    for part in 0..<parts {
                        let share = partRange(units, part: part, parts: parts)
                        #expect(b[s.homes[part]] == min(count, share.lowerBound * align))
                        #expect(b[s.homes[part + 1]] == min(count, share.upperBound * align))
                        let sizes = (s.homes[part]..<s.homes[part + 1]).map { b[$0 + 1] - b[$0] }
                        // Never growing toward the end, except the final remainder; at most ~2 + log2(16) + 16.
                        #expect(sizes.dropLast().allSatisfy { $0 >= (sizes.last ?? 0) }, "\(sizes)")
                        #expect(sizes.count <= 24)
                        if parts > 1 && sizes.count > 1 { #expect(sizes.dropLast().allSatisfy { $0 >= min(minPiece, share.count * align) }) }
                    }
                }
                // With a cap: at most one piece per part.
                let capped = PieceSchedule(count, parts: parts, align: align, maxPieces: parts)
                #expect(capped.pieces <= parts && capped.bounds.first == 0 && capped.bounds.last == count)
                #expect(capped.homes.count == parts + 1 && capped.homes.last == capped.pieces)
            }
        }
        // Cut finer than one piece per thread where there is enough work.
        #expect(PieceSchedule(131_072, parts: 2, align: 16, minPiece: 1024).pieces > 4)
        #expect(PieceSchedule(2048, parts: 2, align: 16, minPiece: 1024).pieces == 2)
    }

    @Test("dispatchPieces runs every piece exactly once, on more than one thread when one is held up")
    func piecesRunOnce() {
        defer { setComputeThreads(1) }
        setComputeThreads(2)
        let pool = ComputePool.shared!
        let pieces = 40
        let runs = UnsafeMutablePointer<Int>.allocate(capacity: pieces)
        let ranBy = UnsafeMutablePointer<Int>.allocate(capacity: pieces)
        let partOf = UnsafeMutablePointer<Int>.allocate(capacity: pieces)
        defer { runs.deallocate(); ranBy.deallocate(); partOf.deallocate() }
        partOf.initialize(repeating: -1, count: pieces)
        runs.initialize(repeating: 0, count: pieces)
        ranBy.initialize(repeating: -1, count: pieces)
        let callerThread = Thread.current
        // Two shares of 20 units (of 64), each cut into pieces of 10, 5, 3, 1, 1 units.
        let schedule = PieceSchedule(pieces * 64, parts: 2, align: 64)
        #expect(schedule.pieces <= pieces)
        #expect(pool.tryAcquire())
        pool.dispatchPieces(schedule) { piece, part in
            runs[piece] += 1
            ranBy[piece] = Thread.current == callerThread ? 0 : 1
            partOf[piece] = part
            // The caller is slow: the worker must take pieces from its share.
            if Thread.current == callerThread { usleep(20_000) }
        }
        pool.release()
        #expect((0..<schedule.pieces).allSatisfy { runs[$0] == 1 })
        #expect((0..<schedule.pieces).allSatisfy { partOf[$0] == ranBy[$0] }, "a piece's part is the thread that ran it")
        // The worker ran its own share and took pieces from the back of the caller's.
        let stolen = (schedule.homes[0]..<schedule.homes[1]).filter { ranBy[$0] == 1 }
        #expect(!stolen.isEmpty, "the worker took none of the slow caller's pieces")
        #expect(ranBy[0] == 0, "the caller starts with its own first piece")
    }

    /// Row and column splits run each part as one single-threaded BLAS call on its
    /// slice: the result is bit for bit those calls made one after the other (so a run
    /// is reproducible for a given thread count), and within float rounding of the
    /// unsplit product. Equal to the unsplit product bit for bit only where the BLAS
    /// kernels give an element the same value whatever the matrix's width: true of
    /// OpenBLAS's SkylakeX/Cooperlake sgemm, not of its Haswell kernels (there an
    /// element of a 70 x 900 product differs from the same element of its 70 x 448
    /// left half in the last bits).
    @Test("sgemm split by rows and by columns is its parts' BLAS calls, bit for bit, and one thread's product to rounding")
    func gemmRowsAndColumns() {
        // (m >= n: rows; m < n: columns), both transpose combinations the model uses.
        let shapes: [(Bool, Bool, Int, Int, Int)] = [
            (false, true, 1000, 64, 96), (false, false, 999, 80, 40), (false, true, 70, 900, 96), (true, false, 200, 700, 150),
        ]
        for (i, (ta, tb, m, n, k)) in shapes.enumerated() {
            let counts = [1, 2, 3]
            let results = underThreadCounts(counts) { gemm(transA: ta, transB: tb, m: m, n: n, k: k, beta: 1, seed: UInt64(i)) }
            for (parts, r) in zip(counts, results).dropFirst() {
                let byParts = gemmInParts(transA: ta, transB: tb, m: m, n: n, k: k, beta: 1, seed: UInt64(i), parts: parts)
                #expect(r == byParts, "shape \(m)x\(n)x\(k), \(parts) parts")
                #expect(maxRelativeDifference(r, results[0]) <= 1e-5, "shape \(m)x\(n)x\(k), \(parts) threads vs 1")
            }
        }
    }

    @Test("sgemm split over the reduction (weight-gradient shapes) matches one thread to rounding")
    func gemmReduction() {
        for (i, (m, n, k)) in [(16, 40, 5000), (64, 27, 3001), (8, 8, 300)].enumerated() {
            for beta: Float in [0, 1] {
                let results = underThreadCounts { gemm(transA: true, transB: false, m: m, n: n, k: k, beta: beta, seed: UInt64(10 + i)) }
                for r in results.dropFirst() {
                    let d = maxRelativeDifference(r, results[0])
                    #expect(d < 1e-5, "shape \(m)x\(n)x\(k) beta \(beta): \(d)")
                }
                // Deterministic for a given thread count.
                let again = underThreadCounts([2]) { gemm(transA: true, transB: false, m: m, n: n, k: k, beta: beta, seed: UInt64(10 + i)) }
                #expect(again[0] == results[1])
            }
        }
    }

    @Test("convolution forward and backward (im2col, col2im, GEMMs) agree across thread counts")
    func convolution() {
        let shapes = [
            Conv2DShape(batch: 3, inHeight: 17, inWidth: 9, inChannels: 16, outChannels: 24, kernel: 3, stride: 1, padding: 1),
            Conv2DShape(batch: 2, inHeight: 20, inWidth: 12, inChannels: 8, outChannels: 32, kernel: 3, stride: 2, padding: 1),
            Conv2DShape(batch: 2, inHeight: 32, inWidth: 16, inChannels: 3, outChannels: 16, kernel: 7, stride: 2, padding: 3),
        ]
        for (i, s) in shapes.enumerated() {
            var rng = SplitMix64(seed: 100 + UInt64(i))
            let x = rng.array(s.inputCount), w = rng.array(s.weightCount), g = rng.array(s.outputCount)
            let results = underThreadCounts { () -> ([Float], [Float], [Float]) in
                var y = [Float](repeating: 0, count: s.outputCount)
                var gx = [Float](repeating: 0, count: s.inputCount)
                var gw = [Float](repeating: 0, count: s.weightCount)
                var ws = [Float](repeating: 0, count: max(1, s.workspaceCount))
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in g.withUnsafeBufferPointer { gp in
                    y.withUnsafeMutableBufferPointer { yp in gx.withUnsafeMutableBufferPointer { gxp in
                        gw.withUnsafeMutableBufferPointer { gwp in ws.withUnsafeMutableBufferPointer { wsp in
                            conv2DForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: nil,
                                          output: yp.baseAddress!, workspace: wsp.baseAddress!)
                            conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: gp.baseAddress!,
                                           gradInput: gxp.baseAddress!, gradWeight: gwp.baseAddress!, gradBias: nil,
                                           workspace: wsp.baseAddress!)
                        } }
                    } }
                } } }
                return (y, gx, gw)
            }
            for r in results.dropFirst() {
                #expect(maxRelativeDifference(r.0, results[0].0) < 1e-6, "forward \(s.summary)")
                #expect(maxRelativeDifference(r.1, results[0].1) < 1e-6, "input gradient \(s.summary)")
                #expect(maxRelativeDifference(r.2, results[0].2) < 1e-5, "weight gradient \(s.summary)")
            }
        }
    }

    @Test("col2im split by input rows is bit-identical to one thread")
    func col2imExact() {
        for s in [Conv2DShape(batch: 3, inHeight: 13, inWidth: 7, inChannels: 64, outChannels: 1, kernel: 3, stride: 1, padding: 1),
                  Conv2DShape(batch: 2, inHeight: 24, inWidth: 12, inChannels: 32, outChannels: 1, kernel: 7, stride: 2, padding: 3)] {
            var rng = SplitMix64(seed: 7)
            let col = rng.array(s.batch * s.columnCountPerImage)
            let results = underThreadCounts { () -> [Float] in
                var gx = [Float](repeating: 0, count: s.inputCount)
                col.withUnsafeBufferPointer { cp in gx.withUnsafeMutableBufferPointer { gp in
                    col2imAccumulate(s, images: s.batch, col: cp.baseAddress!, gradInput: gp.baseAddress!)
                } }
                return gx
            }
            for r in results.dropFirst() { #expect(r == results[0], "\(s.summary)") }
            // Zeroing in the parts: what was in gradInput before (NaN here) is gone, and the
            // result is the same bits as adding onto zeros.
            let zeroed = underThreadCounts { () -> [Float] in
                var gx = [Float](repeating: .nan, count: s.inputCount)
                col.withUnsafeBufferPointer { cp in gx.withUnsafeMutableBufferPointer { gp in
                    col2imAccumulate(s, images: s.batch, col: cp.baseAddress!, gradInput: gp.baseAddress!, zeroingFirst: true)
                } }
                return gx
            }
            for r in zeroed { #expect(r == results[0], "\(s.summary), zeroing first") }
        }
    }

    @Test("BatchNorm (with and without ReLU) agrees across thread counts")
    func batchNorm() {
        let rows = 3000, channels = 40
        var rng = SplitMix64(seed: 5)
        let x = rng.array(rows * channels).map { $0 * 3 + 1 }, g = rng.array(rows * channels)
        let gamma = rng.array(channels), beta = rng.array(channels)
        for relu in [false, true] {
            let results = underThreadCounts { () -> [[Float]] in
                var y = [Float](repeating: 0, count: rows * channels), gx = y
                var mean = [Float](repeating: 0, count: channels), invStd = mean
                var rm = [Float](repeating: 0, count: channels), rv = [Float](repeating: 1, count: channels)
                var gg = [Float](repeating: 0, count: channels), gb = gg
                x.withUnsafeBufferPointer { xp in g.withUnsafeBufferPointer { gp in
                    gamma.withUnsafeBufferPointer { gap in beta.withUnsafeBufferPointer { bp in
                        y.withUnsafeMutableBufferPointer { yp in gx.withUnsafeMutableBufferPointer { gxp in
                            mean.withUnsafeMutableBufferPointer { mp in invStd.withUnsafeMutableBufferPointer { ip in
                                rm.withUnsafeMutableBufferPointer { rmp in rv.withUnsafeMutableBufferPointer { rvp in
                                    gg.withUnsafeMutableBufferPointer { ggp in gb.withUnsafeMutableBufferPointer { gbp in
                                        if relu {
                                            batchNormReLUForwardTraining(
                                                rows: rows, channels: channels, input: xp.baseAddress!, gamma: gap.baseAddress!,
                                                beta: bp.baseAddress!, output: yp.baseAddress!, saveMean: mp.baseAddress!,
                                                saveInvStd: ip.baseAddress!, runningMean: rmp.baseAddress!,
                                                runningVar: rvp.baseAddress!, momentum: 0.1, eps: 1e-5)
                                            batchNormReLUBackward(
                                                rows: rows, channels: channels, input: xp.baseAddress!,
                                                gamma: gap.baseAddress!, beta: bp.baseAddress!, saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                                gradOutput: gp.baseAddress!, gradInput: gxp.baseAddress!,
                                                gradGamma: ggp.baseAddress!, gradBeta: gbp.baseAddress!)
                                        } else {
                                            batchNormForwardTraining(
                                                rows: rows, channels: channels, input: xp.baseAddress!, gamma: gap.baseAddress!,
                                                beta: bp.baseAddress!, output: yp.baseAddress!, saveMean: mp.baseAddress!,
                                                saveInvStd: ip.baseAddress!, runningMean: rmp.baseAddress!,
                                                runningVar: rvp.baseAddress!, momentum: 0.1, eps: 1e-5)
                                            batchNormBackward(
                                                rows: rows, channels: channels, input: xp.baseAddress!, gamma: gap.baseAddress!,
                                                saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                                gradOutput: gp.baseAddress!, gradInput: gxp.baseAddress!,
                                                gradGamma: ggp.baseAddress!, gradBeta: gbp.baseAddress!)
                                        }
                                    } }
                                } }
                            } }
                        } }
                    } }
                } }
                return [y, gx, mean, invStd, rm, rv, gg, gb]
            }
            let names = ["output", "gradInput", "mean", "invStd", "runningMean", "runningVar", "gradGamma", "gradBeta"]
            for r in results.dropFirst() {
                for (i, name) in names.enumerated() {
                    let d = maxRelativeDifference(r[i], results[0][i])
                    #expect(d < 1e-5, "relu \(relu) \(name): \(d)")
                }
            }
        }
    }

    @Test("elementwise, activation and pooling kernels are bit-identical across thread counts")
    func elementwise() {
        let count = 300_000
        var rng = SplitMix64(seed: 9)
        let a = rng.array(count), b = rng.array(count), c = rng.array(count)
        let (n, h, w, ch) = (4, 33, 17, 64)
        let pin = rng.array(n * h * w * ch)
        let oh = maxPool3x3s2OutputSize(h), ow = maxPool3x3s2OutputSize(w)
        let pg = rng.array(n * oh * ow * ch)
        let results = underThreadCounts { () -> [[Float]] in
            var outs = [[Float]](repeating: [Float](repeating: 0, count: count), count: 8)
            var pooled = [Float](repeating: 0, count: pg.count), pgrad = pin
            var arg = [Int32](repeating: 0, count: pg.count)
            var avg = [Float](repeating: 0, count: n * ch), avgGrad = pin
            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeBufferPointer { cp in
                let a = ap.baseAddress!, b = bp.baseAddress!, c = cp.baseAddress!
                outs[0].withUnsafeMutableBufferPointer { o in reluForward(count: count, input: a, output: o.baseAddress!) }
                outs[1].withUnsafeMutableBufferPointer { o in reluBackward(count: count, output: a, gradOutput: b, gradInput: o.baseAddress!) }
                outs[2].withUnsafeMutableBufferPointer { o in sigmoidForward(count: count, input: a, output: o.baseAddress!) }
                outs[3].withUnsafeMutableBufferPointer { o in sigmoidBackward(count: count, output: a, gradOutput: b, gradInput: o.baseAddress!) }
                var gradM = [Float](repeating: 0, count: count)
                outs[4].withUnsafeMutableBufferPointer { o in
                    gradM.withUnsafeMutableBufferPointer { o2 in
                        attentionCombineBackward(count: count, f: a, m: b, gradOutput: c, gradAttended: a,
                                                 gradF: o.baseAddress!, gradM: o2.baseAddress!)
                    }
                }
                outs[5] = gradM
                outs[6].withUnsafeMutableBufferPointer { o in
                    copy(count: count, a, into: o.baseAddress!)
                    addInPlace(count: count, b, into: o.baseAddress!)
                    scale(count: count, o.baseAddress!, by: 0.3)
                }
                outs[7].withUnsafeMutableBufferPointer { o in
                    attentionCombineForward(count: count, f: a, m: c, attended: nil, output: o.baseAddress!)
                    add(count: count, o.baseAddress!, b, into: o.baseAddress!)
                }
            } } }
            pin.withUnsafeBufferPointer { ip in pg.withUnsafeBufferPointer { gp in
                pooled.withUnsafeMutableBufferPointer { o in arg.withUnsafeMutableBufferPointer { ag in
                    maxPool3x3s2Forward(batch: n, height: h, width: w, channels: ch, input: ip.baseAddress!,
                                        output: o.baseAddress!, argmax: ag.baseAddress!)
                    pgrad.withUnsafeMutableBufferPointer { gi in
                        maxPool3x3s2Backward(batch: n, height: h, width: w, channels: ch, gradOutput: gp.baseAddress!,
                                             argmax: UnsafePointer(ag.baseAddress!), gradInput: gi.baseAddress!)
                    }
                } }
                avg.withUnsafeMutableBufferPointer { o in
                    globalAvgPoolForward(batch: n, spatial: h * w, channels: ch, input: ip.baseAddress!, output: o.baseAddress!)
                }
                avgGrad.withUnsafeMutableBufferPointer { o in
                    globalAvgPoolBackward(batch: n, spatial: h * w, channels: ch, gradOutput: ip.baseAddress!,
                                          gradInput: o.baseAddress!)
                }
            } }
            return outs + [pooled, arg.map(Float.init), pgrad, avg, avgGrad]
        }
        for r in results.dropFirst() {
            for i in r.indices { #expect(r[i] == results[0][i], "output \(i)") }
        }
    }

    /// The caller that gets the pool splits the product in two; the others run it on
    /// their own thread. Either way the result is one of those two, bit for bit (the
    /// same unless the BLAS kernels depend on the width: see `gemmRowsAndColumns`).
    @Test("kernels called from several threads at once still give the one-thread (or two-part) result")
    func concurrentCallers() {
        let expected = underThreadCounts([1]) { gemm(transA: false, transB: true, m: 600, n: 300, k: 200, beta: 0, seed: 3) }[0]
        let split = gemmInParts(transA: false, transB: true, m: 600, n: 300, k: 200, beta: 0, seed: 3, parts: 2)
        setComputeThreads(2)
        defer { setComputeThreads(1) }
        let results = UnsafeMutablePointer<[Float]>.allocate(capacity: 4)
        results.initialize(repeating: [], count: 4)
        defer { results.deinitialize(count: 4); results.deallocate() }
        nonisolated(unsafe) let out = results
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            out[i] = gemm(transA: false, transB: true, m: 600, n: 300, k: 200, beta: 0, seed: 3)
        }
        for i in 0..<4 { #expect(results[i] == expected || results[i] == split) }
    }
}
