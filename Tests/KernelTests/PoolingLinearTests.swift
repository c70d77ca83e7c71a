import Testing
import TestSupport
@testable import Kernels

// MARK: Max-pool

func maxPool(_ b: Int, _ h: Int, _ w: Int, _ c: Int, _ x: [Float]) -> (output: [Float], argmax: [Int32]) {
    let count = b * maxPool3x3s2OutputSize(h) * maxPool3x3s2OutputSize(w) * c
    var y = [Float](repeating: .nan, count: count), arg = [Int32](repeating: -7, count: count)
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in arg.withUnsafeMutableBufferPointer { ap in
        maxPool3x3s2Forward(batch: b, height: h, width: w, channels: c, input: xp.baseAddress!,
                            output: yp.baseAddress!, argmax: ap.baseAddress!)
    } } }
    return (y, arg)
}

@Test("max-pool 3x3/2 backward matches finite differences; forward matches a direct max")
func maxPoolGradient() {
    let b = 2, h = 7, w = 6, c = 6  // 4 channels vectorised + a scalar tail of 2
    var rng = SplitMix64(seed: 50)
    var x = distinctShuffled(b * h * w * c, rng: &rng)
    let (y, arg) = maxPool(b, h, w, c, x)
    let oh = maxPool3x3s2OutputSize(h), ow = maxPool3x3s2OutputSize(w)
    #expect(oh == 4 && ow == 3)
    for n in 0..<b { for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
        var best = -Float.infinity, bestIndex = -1
        for iy in max(0, 2 * oy - 1)..<min(h, 2 * oy + 2) { for ix in max(0, 2 * ox - 1)..<min(w, 2 * ox + 2) {
            let i = ((n * h + iy) * w + ix) * c + ch
            if x[i] > best { best = x[i]; bestIndex = i }
        } }
        let o = ((n * oh + oy) * ow + ox) * c + ch
        #expect(y[o] == best && Int(arg[o]) == bestIndex)
    } } } }
    let r = rng.array(y.count)
    var gX = [Float](repeating: .nan, count: x.count)
    r.withUnsafeBufferPointer { rp in arg.withUnsafeBufferPointer { ap in gX.withUnsafeMutableBufferPointer { gx in
        maxPool3x3s2Backward(batch: b, height: h, width: w, channels: c, gradOutput: rp.baseAddress!,
                             argmax: ap.baseAddress!, gradInput: gx.baseAddress!)
    } } }
    let check = gradientCheck(input: &x, analytic: gX) { weightedSum(maxPool(b, h, w, c, $0).output, r) }
    #expect(check.worst < gradientTolerance, "max-pool gradInput: \(check)")
}

@Test("max-pool padding never wins over negative inputs")
func maxPoolNegative() {
    let b = 1, h = 4, w = 5, c = 5
    let x = (0..<(b * h * w * c)).map { -1 - Float($0) }
    let (y, arg) = maxPool(b, h, w, c, x)
    #expect(y.allSatisfy { $0 < 0 }, "\(y)")
    // Output (0, 0) covers input pixels (0..1, 0..1); the largest is pixel (0, 0).
    #expect(Array(y[0..<5]) == [-1, -2, -3, -4, -5] && Array(arg[0..<5]) == [0, 1, 2, 3, 4])
}

// MARK: Global average pool

func globalAvgPool(_ b: Int, _ s: Int, _ c: Int, _ x: [Float]) -> [Float] {
    var y = [Float](repeating: .nan, count: b * c)
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
        globalAvgPoolForward(batch: b, spatial: s, channels: c, input: xp.baseAddress!, output: yp.baseAddress!)
    } }
    return y
}

@Test("global average pool backward matches finite differences")
func globalAvgPoolGradient() {
    let b = 3, s = 8, c = 4
    var rng = SplitMix64(seed: 60)
    var x = rng.array(b * s * c)
    let y = globalAvgPool(b, s, c, x)
    #expect(abs(y[1 * c + 2] - (0..<s).map { x[(1 * s + $0) * c + 2] }.reduce(0, +) / Float(s)) < 1e-6)
    let r = rng.array(y.count)
    var gX = [Float](repeating: .nan, count: x.count)
    r.withUnsafeBufferPointer { rp in gX.withUnsafeMutableBufferPointer { gx in
        globalAvgPoolBackward(batch: b, spatial: s, channels: c, gradOutput: rp.baseAddress!, gradInput: gx.baseAddress!)
    } }
    let check = gradientCheck(input: &x, analytic: gX, h: linearStep) { weightedSum(globalAvgPool(b, s, c, $0), r) }
    #expect(check.worst < gradientTolerance, "GAP gradInput: \(check)")
}

// MARK: Linear

func linear(_ rows: Int, _ inF: Int, _ outF: Int, _ x: [Float], _ w: [Float], _ b: [Float]?) -> [Float] {
    var y = [Float](repeating: .nan, count: rows * outF)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
        if let b {
            b.withUnsafeBufferPointer { bp in
                linearForward(rows: rows, inFeatures: inF, outFeatures: outF, input: xp.baseAddress!,
                              weight: wp.baseAddress!, bias: bp.baseAddress!, output: yp.baseAddress!)
            }
        } else {
            linearForward(rows: rows, inFeatures: inF, outFeatures: outF, input: xp.baseAddress!,
                          weight: wp.baseAddress!, bias: nil, output: yp.baseAddress!)
        }
    } } }
    return y
}

@Test("linear forward is x W^T + b; backward matches finite differences (input, weight, bias)")
func linearGradient() {
    let rows = 5, inF = 7, outF = 4
    var rng = SplitMix64(seed: 70)
    var x = rng.array(rows * inF), w = rng.array(outF * inF), b = rng.array(outF)
    let y = linear(rows, inF, outF, x, w, b)
    let y2 = linear(rows, inF, outF, x, w, nil)
    for i in 0..<rows { for o in 0..<outF {
        let dot = (0..<inF).map { Double(x[i * inF + $0]) * Double(w[o * inF + $0]) }.reduce(0, +)
        #expect(abs(Double(y[i * outF + o]) - dot - Double(b[o])) < 1e-5)
        #expect(abs(Double(y2[i * outF + o]) - dot) < 1e-5)
    } }
    let r = rng.array(y.count)
    let wStart = rng.array(w.count), bStart = rng.array(outF)
    var gW = wStart, gB = bStart
    var gX = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in gB.withUnsafeMutableBufferPointer { gb in
            linearBackward(rows: rows, inFeatures: inF, outFeatures: outF, input: xp.baseAddress!, weight: wp.baseAddress!,
                           gradOutput: rp.baseAddress!, gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!,
                           gradBias: gb.baseAddress!)
        } } }
    } } }
    let x0 = x, w0 = w, b0 = b
    let inputCheck = gradientCheck(input: &x, analytic: gX, h: linearStep) { weightedSum(linear(rows, inF, outF, $0, w0, b0), r) }
    #expect(inputCheck.worst < gradientTolerance, "linear gradInput: \(inputCheck)")
    let weightCheck = gradientCheck(input: &w, analytic: zip(gW, wStart).map { $0 - $1 }, h: linearStep) {
        weightedSum(linear(rows, inF, outF, x0, $0, b0), r)
    }
    #expect(weightCheck.worst < gradientTolerance, "linear gradWeight: \(weightCheck)")
    let biasCheck = gradientCheck(input: &b, analytic: zip(gB, bStart).map { $0 - $1 }, h: linearStep) {
        weightedSum(linear(rows, inF, outF, x0, w0, $0), r)
    }
    #expect(biasCheck.worst < gradientTolerance, "linear gradBias: \(biasCheck)")
}

@Test("max-pool ties keep the first pixel in scan order; -inf inputs still give valid indices")
func maxPoolTiesAndInfinity() {
    let b = 1, h = 3, w = 3, c = 5
    let x = [Float](repeating: -.infinity, count: b * h * w * c)
    let (y, arg) = maxPool(b, h, w, c, x)
    #expect(y.allSatisfy { $0 == -.infinity })
    // Output (1, 1) covers rows 1..2, columns 1..2; all tie, so the first, pixel (1, 1), wins.
    let o = (1 * 2 + 1) * c
    #expect((0..<c).allSatisfy { Int(arg[o + $0]) == (1 * w + 1) * c + $0 }, "\(Array(arg[o..<(o + c)]))")
}

@Test("column sums (bias gradients): one thread is the blockwise Float-then-Double sum, two threads agree to rounding",
      arguments: [(rows: 1001, columns: 37), (rows: 4096, columns: 512), (rows: 3, columns: 16)])
func columnSums(shape: (rows: Int, columns: Int)) {
    let (rows, columns) = shape
    var rng = SplitMix64(seed: 11)
    let x = rng.array(rows * columns).map { $0 + 0.25 }
    // The blockwise sum written out: 256-row blocks in Float, their sums in Double, onto 1.5.
    var expected = [Float](repeating: 1.5, count: columns)
    for c in 0..<columns {
        var total = 0.0
        for start in stride(from: 0, to: rows, by: 256) {
            var partial: Float = 0
            for r in start..<min(rows, start + 256) { partial += x[r * columns + c] }
            total += Double(partial)
        }
        expected[c] += Float(total)
    }
    let saved = ComputePool.minimumWork
    defer { setComputeThreads(1); ComputePool.minimumWork = saved }
    for threads in [1, 2] {
        setComputeThreads(threads)
        ComputePool.minimumWork = 1
        var sums = [Float](repeating: 1.5, count: columns)
        x.withUnsafeBufferPointer { xp in sums.withUnsafeMutableBufferPointer { accumulateColumnSums(rows: rows, columns: columns, xp.baseAddress!, into: $0.baseAddress!) } }
        if threads == 1 {
            #expect(sums == expected, "\(shape)")
        } else {
            #expect(zip(sums, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) }, "\(shape), 2 threads")
        }
    }
}
