import Testing
import TestSupport
@testable import Kernels

// MARK: Attention combination

/// (attended, output) of the forward.
func attentionCombine(_ f: [Float], _ m: [Float]) -> (attended: [Float], output: [Float]) {
    var a = [Float](repeating: .nan, count: f.count), y = a
    f.withUnsafeBufferPointer { fp in m.withUnsafeBufferPointer { mp in
        a.withUnsafeMutableBufferPointer { ap in y.withUnsafeMutableBufferPointer { yp in
            attentionCombineForward(count: f.count, f: fp.baseAddress!, m: mp.baseAddress!,
                                    attended: ap.baseAddress!, output: yp.baseAddress!)
        } }
    } }
    return (a, y)
}

@Test("attentionCombine backward matches finite differences (f, m)", arguments: [false, true])
func attentionCombineGradient(withGradAttended: Bool) {
    var rng = SplitMix64(seed: withGradAttended ? 81 : 80)
    var f = rng.array(40), m = rng.array(40)
    let r = rng.array(40), ra = rng.array(40)
    let (a, y) = attentionCombine(f, m)
    for i in f.indices { #expect(a[i] == f[i] * m[i] && abs(y[i] - (f[i] * m[i] + f[i])) <= 1e-6) }
    var gF = [Float](repeating: .nan, count: 40), gM = gF
    f.withUnsafeBufferPointer { fp in m.withUnsafeBufferPointer { mp in r.withUnsafeBufferPointer { rp in
        ra.withUnsafeBufferPointer { rap in gF.withUnsafeMutableBufferPointer { gf in gM.withUnsafeMutableBufferPointer { gm in
            attentionCombineBackward(count: 40, f: fp.baseAddress!, m: mp.baseAddress!, gradOutput: rp.baseAddress!,
                                     gradAttended: withGradAttended ? rap.baseAddress! : nil,
                                     gradF: gf.baseAddress!, gradM: gm.baseAddress!)
        } } }
    } } }
    let scalar: ([Float], [Float]) -> Double = { f, m in
        let (a, y) = attentionCombine(f, m)
        return weightedSum(y, r) + (withGradAttended ? weightedSum(a, ra) : 0)
    }
    let m0 = m, f0 = f
    let fCheck = gradientCheck(input: &f, analytic: gF, h: linearStep) { scalar($0, m0) }
    #expect(fCheck.worst < gradientTolerance, "gradF: \(fCheck)")
    let mCheck = gradientCheck(input: &m, analytic: gM, h: linearStep) { scalar(f0, $0) }
    #expect(mCheck.worst < gradientTolerance, "gradM: \(mCheck)")
}

@Test("attentionCombine forward without the attended output")
func attentionCombineNoAttended() {
    let f: [Float] = [1, -2, 3], m: [Float] = [0.5, 0.25, -1]
    var y = [Float](repeating: .nan, count: 3)
    f.withUnsafeBufferPointer { fp in m.withUnsafeBufferPointer { mp in y.withUnsafeMutableBufferPointer { yp in
        attentionCombineForward(count: 3, f: fp.baseAddress!, m: mp.baseAddress!, attended: nil, output: yp.baseAddress!)
    } } }
    #expect(y == [1.5, -2.5, 0])
}

// MARK: Layout and arithmetic

@Test("NCHW <-> NHWC round trip and index mapping", arguments: [(2, 3, 4, 5), (2, 5, 9, 11)])
func layoutRoundTrip(shape: (Int, Int, Int, Int)) {
    let (b, c, h, w) = shape  // the second has a ragged pixel tile
    let nchw = (0..<(b * c * h * w)).map { Float($0) }
    var nhwc = [Float](repeating: .nan, count: nchw.count), back = nhwc
    nchw.withUnsafeBufferPointer { s in nhwc.withUnsafeMutableBufferPointer { d in
        nchwToNHWC(batch: b, channels: c, height: h, width: w, s.baseAddress!, d.baseAddress!)
    } }
    nhwc.withUnsafeBufferPointer { s in back.withUnsafeMutableBufferPointer { d in
        nhwcToNCHW(batch: b, channels: c, height: h, width: w, s.baseAddress!, d.baseAddress!)
    } }
    #expect(back == nchw)
    for (n, ch, y, x) in [(1, 2, 3, 4), (0, c - 1, h - 1, w - 1), (b - 1, 0, h / 2, 0)] {
        let nhwcIndex: Int = ((n * h + y) * w + x) * c + ch
        let nchwIndex: Int = ((n * c + ch) * h + y) * w + x
        #expect(nhwc[nhwcIndex] == nchw[nchwIndex], "element (\(n), \(ch), \(y), \(x))")
    }
    #expect(nhwc != nchw)
}

@Test("concatColumns / splitColumns round trip and placement")
func concatSplitRoundTrip() {
    let rows = 3, widths = [2, 1, 3]
    let parts: [[Float]] = widths.enumerated().map { i, w in (0..<(rows * w)).map { Float(100 * i + $0) } }
    var joined = [Float](repeating: .nan, count: rows * 6)
    var split0 = [Float](repeating: .nan, count: rows * 2), split1 = [Float](repeating: .nan, count: rows)
    var split2 = [Float](repeating: .nan, count: rows * 3)
    parts[0].withUnsafeBufferPointer { p0 in parts[1].withUnsafeBufferPointer { p1 in parts[2].withUnsafeBufferPointer { p2 in
        joined.withUnsafeMutableBufferPointer { j in
            concatColumns(rows: rows, parts: [p0.baseAddress!, p1.baseAddress!, p2.baseAddress!], widths: widths,
                          output: j.baseAddress!)
        }
    } } }
    #expect(Array(joined[6..<12]) == [2, 3, 101, 203, 204, 205])
    joined.withUnsafeBufferPointer { j in split0.withUnsafeMutableBufferPointer { s0 in
        split1.withUnsafeMutableBufferPointer { s1 in split2.withUnsafeMutableBufferPointer { s2 in
            splitColumns(rows: rows, input: j.baseAddress!, widths: widths,
                         parts: [s0.baseAddress!, s1.baseAddress!, s2.baseAddress!])
        } }
    } }
    #expect([split0, split1, split2] == parts)
}

@Test("sumOfSquares, add, addInPlace, scale")
func arithmetic() {
    let x: [Float] = [1, -2, 3, 0.5]
    #expect(x.withUnsafeBufferPointer { sumOfSquares(count: 4, $0.baseAddress!) } == 14.25)
    // Double accumulation: 2^24 ones would stall a Float sum at 16777216.
    let ones = [Float](repeating: 1, count: (1 << 24) + 8)
    #expect(ones.withUnsafeBufferPointer { sumOfSquares(count: $0.count, $0.baseAddress!) } == Double(ones.count))
    var y: [Float] = [10, 20, 30, 40]
    y.withUnsafeMutableBufferPointer { yp in x.withUnsafeBufferPointer { xp in addInPlace(count: 4, xp.baseAddress!, into: yp.baseAddress!) } }
    #expect(y == [11, 18, 33, 40.5])
    var z = [Float](repeating: 0, count: 4)
    x.withUnsafeBufferPointer { xp in y.withUnsafeBufferPointer { yp in z.withUnsafeMutableBufferPointer { zp in
        add(count: 4, xp.baseAddress!, yp.baseAddress!, into: zp.baseAddress!)
    } } }
    #expect(z == [12, 16, 36, 41])
    z.withUnsafeMutableBufferPointer { scale(count: 4, $0.baseAddress!, by: 0.5) }
    #expect(z == [6, 8, 18, 20.5])
}

@Test("sumOfSquares: the same bits on one and two threads, and the blockwise sum")
func sumOfSquaresThreads() {
    var rng = SplitMix64(seed: 3)
    let x = rng.array(3 * 65536 + 7)
    var expected = 0.0
    for b in stride(from: 0, to: x.count, by: 65536) {
        expected += x[b..<min(x.count, b + 65536)].reduce(0.0) { $0 + Double($1) * Double($1) }
    }
    let saved = ComputePool.minimumWork
    defer { setComputeThreads(1); ComputePool.minimumWork = saved }
    var results: [Double] = []
    for threads in [1, 2] {
        setComputeThreads(threads)
        ComputePool.minimumWork = 1
        results.append(x.withUnsafeBufferPointer { sumOfSquares(count: $0.count, $0.baseAddress!) })
    }
    #expect(results[0] == results[1])
    #expect(abs(results[0] - expected) <= 1e-12 * expected)
}

@Test("fill sets exactly the first count floats, on one and two threads")
func fillRange() {
    let saved = ComputePool.minimumWork
    defer { setComputeThreads(1); ComputePool.minimumWork = saved }
    for threads in [1, 2] {
        setComputeThreads(threads)
        ComputePool.minimumWork = 1
        var x = [Float](repeating: 7, count: 1001)
        x.withUnsafeMutableBufferPointer { fill(count: 999, $0.baseAddress!, with: 0) }
        #expect(x[..<999].allSatisfy { $0 == 0 } && x[999...].allSatisfy { $0 == 7 }, "\(threads) thread(s)")
    }
}
