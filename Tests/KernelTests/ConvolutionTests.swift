import Testing
import TestSupport
@testable import Kernels

// MARK: Reference

/// Direct convolution in Double straight from the definition (NHWC, OHWI).
func naiveConv(_ s: Conv2DShape, input: [Float], weight: [Float], bias: [Float]?) -> [Double] {
    let oh = s.outHeight, ow = s.outWidth, k = s.kernel, cin = s.inChannels
    var out = [Double](repeating: 0, count: s.outputCount)
    for n in 0..<s.batch {
        for oy in 0..<oh {
            for ox in 0..<ow {
                for co in 0..<s.outChannels {
                    var acc = bias.map { Double($0[co]) } ?? 0
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx
                            guard iy >= 0, iy < s.inHeight, ix >= 0, ix < s.inWidth else { continue }
                            for ci in 0..<cin {
                                let x = input[((n * s.inHeight + iy) * s.inWidth + ix) * cin + ci]
                                let w = weight[((co * k + ky) * k + kx) * cin + ci]
                                acc += Double(x) * Double(w)
                            }
                        }
                    }
                    out[((n * oh + oy) * ow + ox) * s.outChannels + co] = acc
                }
            }
        }
    }
    return out
}

/// Runs conv2DForward with `chunk` images per im2col chunk.
func convForward(_ s: Conv2DShape, _ input: [Float], _ weight: [Float], _ bias: [Float]?, chunk: Int) -> [Float] {
    var out = [Float](repeating: .nan, count: s.outputCount)
    var work = [Float](repeating: .nan, count: max(1, s.isPointwise ? 0 : chunk * s.columnCountPerImage))
    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { w in
            out.withUnsafeMutableBufferPointer { y in
                work.withUnsafeMutableBufferPointer { ws in
                    if let bias {
                        bias.withUnsafeBufferPointer { b in
                            conv2DForward(s, input: x.baseAddress!, weight: w.baseAddress!, bias: b.baseAddress!,
                                          output: y.baseAddress!, workspace: ws.baseAddress!, imagesPerChunk: chunk)
                        }
                    } else {
                        conv2DForward(s, input: x.baseAddress!, weight: w.baseAddress!, bias: nil,
                                      output: y.baseAddress!, workspace: ws.baseAddress!, imagesPerChunk: chunk)
                    }
                }
            }
        }
    }
    return out
}

// MARK: Shapes

/// The five shapes ResNet-50 uses, small and non-square.
let convCases: [(name: String, shape: Conv2DShape)] = [
    ("7x7/2 pad 3", Conv2DShape(batch: 2, inHeight: 11, inWidth: 8, inChannels: 3, outChannels: 4, kernel: 7, stride: 2, padding: 3)),
    ("3x3/1 pad 1", Conv2DShape(batch: 2, inHeight: 6, inWidth: 4, inChannels: 3, outChannels: 5, kernel: 3, stride: 1, padding: 1)),
    ("3x3/2 pad 1", Conv2DShape(batch: 3, inHeight: 7, inWidth: 6, inChannels: 4, outChannels: 3, kernel: 3, stride: 2, padding: 1)),
    ("1x1/1", Conv2DShape(batch: 2, inHeight: 5, inWidth: 3, inChannels: 6, outChannels: 4, kernel: 1, stride: 1, padding: 0)),
    ("1x1/2", Conv2DShape(batch: 2, inHeight: 6, inWidth: 5, inChannels: 4, outChannels: 3, kernel: 1, stride: 2, padding: 0)),
]

// MARK: Forward

@Test("conv forward equals a direct convolution", arguments: convCases.indices, [false, true])
func convForwardMatchesNaive(caseIndex: Int, withBias: Bool) {
    let s = convCases[caseIndex].shape
    var rng = SplitMix64(seed: UInt64(10 + caseIndex))
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5)
    let b: [Float]? = withBias ? rng.array(s.outChannels) : nil
    let expected = naiveConv(s, input: x, weight: w, bias: b)
    for chunk in [1, 2, s.batch] {
        let got = convForward(s, x, w, b, chunk: chunk)
        let scale = expected.map(abs).max()!
        let worst = zip(got, expected).map { abs(Double($0) - $1) }.max()!
        #expect(worst <= 1e-4 * scale, "\(convCases[caseIndex].name) chunk \(chunk): worst |diff| \(worst), scale \(scale)")
    }
}

@Test("conv forward on a 64-image non-square batch, chunked, equals a direct convolution")
func convForwardLargeBatch() {
    for s in [Conv2DShape(batch: 64, inHeight: 8, inWidth: 4, inChannels: 5, outChannels: 6, kernel: 3, stride: 2, padding: 1),
              Conv2DShape(batch: 1, inHeight: 16, inWidth: 8, inChannels: 3, outChannels: 4, kernel: 7, stride: 2, padding: 3)] {
        var rng = SplitMix64(seed: 77)
        let x = rng.array(s.inputCount), w = rng.array(s.weightCount), b = rng.array(s.outChannels)
        let expected = naiveConv(s, input: x, weight: w, bias: b)
        let scale = expected.map(abs).max()!
        for chunk in [s.imagesPerChunk, 5] {
            let got = convForward(s, x, w, b, chunk: chunk)
            let worst = zip(got, expected).map { abs(Double($0) - $1) }.max()!
            #expect(worst <= 1e-4 * scale, "batch \(s.batch) chunk \(chunk): worst |diff| \(worst)")
        }
    }
}

// MARK: Backward

@Test("conv backward matches finite differences (input, weight, bias)", arguments: convCases.indices, [false, true])
func convGradients(caseIndex: Int, withBias: Bool) {
    let s = convCases[caseIndex].shape
    let name = convCases[caseIndex].name
    var rng = SplitMix64(seed: UInt64(100 + caseIndex))
    var x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5)
    var b: [Float] = rng.array(s.outChannels)
    let r = rng.array(s.outputCount)
    let chunk = 2  // exercises chunking where batch > 2
    // Parameter gradients start non-zero to check that backward accumulates.
    let weightStart = rng.array(s.weightCount), biasStart = rng.array(s.outChannels)
    var gW = weightStart, gB = biasStart
    var gX = [Float](repeating: .nan, count: s.inputCount)  // must be overwritten
    var work = [Float](repeating: .nan, count: max(1, s.isPointwise ? 0 : chunk * s.columnCountPerImage))
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
            gB.withUnsafeMutableBufferPointer { gb in work.withUnsafeMutableBufferPointer { ws in
                conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                               gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!,
                               gradBias: withBias ? gb.baseAddress! : nil, workspace: ws.baseAddress!, imagesPerChunk: chunk)
            } }
        } }
    } } }
    let dW = zip(gW, weightStart).map { $0 - $1 }
    let dB = zip(gB, biasStart).map { $0 - $1 }
    let bias = withBias ? b : nil
    let wx = w, bx = bias
    let inputCheck = gradientCheck(input: &x, analytic: gX, h: linearStep) { weightedSum(convForward(s, $0, wx, bx, chunk: chunk), r) }
    #expect(inputCheck.worst < gradientTolerance, "\(name) gradInput: \(inputCheck)")
    let xw = x
    let weightCheck = gradientCheck(input: &w, analytic: dW, h: linearStep) { weightedSum(convForward(s, xw, $0, bx, chunk: chunk), r) }
    #expect(weightCheck.worst < gradientTolerance, "\(name) gradWeight: \(weightCheck)")
    if withBias {
        let ww = w
        let biasCheck = gradientCheck(input: &b, analytic: dB, h: linearStep) { weightedSum(convForward(s, xw, ww, $0, chunk: chunk), r) }
        #expect(biasCheck.worst < gradientTolerance, "\(name) gradBias: \(biasCheck)")
    } else {
        #expect(gB == biasStart, "\(name): gradBias touched although nil was passed")
    }
}

@Test("conv backward with gradInput nil still accumulates the weight gradient")
func convBackwardWithoutInputGradient() {
    let s = convCases[2].shape
    var rng = SplitMix64(seed: 5)
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount), r = rng.array(s.outputCount)
    var withInput = [Float](repeating: 0, count: s.weightCount), without = withInput
    var gX = [Float](repeating: 0, count: s.inputCount)
    var work = [Float](repeating: 0, count: s.workspaceCount)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        work.withUnsafeMutableBufferPointer { ws in
            gX.withUnsafeMutableBufferPointer { gx in withInput.withUnsafeMutableBufferPointer { gw in
                conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                               gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!, gradBias: nil, workspace: ws.baseAddress!)
            } }
            without.withUnsafeMutableBufferPointer { gw in
                conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                               gradInput: nil, gradWeight: gw.baseAddress!, gradBias: nil, workspace: ws.baseAddress!)
            }
        }
    } } }
    #expect(withInput == without)
    #expect(withInput.contains { $0 != 0 })
}

@Test("conv backward with accumulateGradInput adds the input gradient onto what gradInput held",
      arguments: convCases.indices.dropFirst())
func convBackwardAccumulatesInputGradient(caseIndex: Int) {
    let s = convCases[caseIndex].shape
    var rng = SplitMix64(seed: UInt64(60 + caseIndex))
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount), r = rng.array(s.outputCount)
    let start = rng.array(s.inputCount, scale: 3)
    var plain = [Float](repeating: .nan, count: s.inputCount), accumulated = start
    var gW = [Float](repeating: 0, count: s.weightCount)
    var work = [Float](repeating: 0, count: max(1, s.workspaceCount))
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        work.withUnsafeMutableBufferPointer { ws in gW.withUnsafeMutableBufferPointer { gw in
            for (buffer, accumulate) in [(0, false), (1, true)] {
                func run(_ g: UnsafeMutablePointer<Float>) {
                    conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                                   gradInput: g, gradWeight: gw.baseAddress!, gradBias: nil, workspace: ws.baseAddress!,
                                   accumulateGradInput: accumulate)
                }
                if buffer == 0 { plain.withUnsafeMutableBufferPointer { run($0.baseAddress!) } }
                else { accumulated.withUnsafeMutableBufferPointer { run($0.baseAddress!) } }
            }
        } }
    } } }
    let expected = zip(start, plain).map { $0 + $1 }
    let worst = zip(accumulated, expected).map { abs($0 - $1) }.max()!
    #expect(worst <= 1e-5, "\(convCases[caseIndex].name): \(worst)")
    #expect(plain.contains { $0 != 0 }, "the input gradient itself is not zero")
}

// MARK: Workspace and layout

@Test("workspaceCount: zero for 1x1/1, bounded chunks otherwise")
func workspaceSizes() {
    let pointwise = Conv2DShape(batch: 64, inHeight: 64, inWidth: 32, inChannels: 256, outChannels: 64, kernel: 1, stride: 1, padding: 0)
    #expect(pointwise.workspaceCount == 0)
    let stem = Conv2DShape(batch: 64, inHeight: 256, inWidth: 128, inChannels: 3, outChannels: 64, kernel: 7, stride: 2, padding: 3)
    #expect(stem.columnCountPerImage == 128 * 64 * 147)
    #expect(stem.imagesPerChunk < 64 && stem.imagesPerChunk >= 1)
    #expect(stem.workspaceCount <= max(Conv2DShape.workspaceBudget, stem.columnCountPerImage))
    #expect(stem.workspaceCount >= stem.columnCountPerImage)
    let small = Conv2DShape(batch: 4, inHeight: 8, inWidth: 4, inChannels: 2, outChannels: 2, kernel: 3, stride: 1, padding: 1)
    #expect(small.workspaceCount == 4 * 32 * 18)
    let late = Conv2DShape(batch: 64, inHeight: 8, inWidth: 4, inChannels: 512, outChannels: 512, kernel: 3, stride: 1, padding: 1)
    #expect(late.imagesPerChunk * 32 >= Conv2DShape.minimumChunkRows && late.imagesPerChunk < 64)
    let huge = Conv2DShape(batch: 2, inHeight: 2048, inWidth: 1024, inChannels: 16, outChannels: 2, kernel: 3, stride: 1, padding: 1)
    #expect(huge.imagesPerChunk == 1 && huge.workspaceCount == huge.columnCountPerImage)
}

@Test("OIHW <-> OHWI round trip and index mapping")
func weightLayoutRoundTrip() {
    let out = 3, inC = 4, k = 3
    let oihw = (0..<(out * inC * k * k)).map { Float($0) }
    var ohwi = [Float](repeating: 0, count: oihw.count), back = ohwi
    oihw.withUnsafeBufferPointer { s in ohwi.withUnsafeMutableBufferPointer { d in
        convWeightOIHWToOHWI(s.baseAddress!, d.baseAddress!, out: out, in: inC, kernel: k)
    } }
    ohwi.withUnsafeBufferPointer { s in back.withUnsafeMutableBufferPointer { d in
        convWeightOHWIToOIHW(s.baseAddress!, d.baseAddress!, out: out, in: inC, kernel: k)
    } }
    #expect(back == oihw)
    // Element (o=2, i=1, ky=0, kx=2): OIHW ((2*4+1)*3+0)*3+2, OHWI ((2*3+0)*3+2)*4+1.
    let ohwiIndex: Int = ((2 * 3 + 0) * 3 + 2) * 4 + 1
    let oihwIndex: Int = ((2 * 4 + 1) * 3 + 0) * 3 + 2
    #expect(ohwi[ohwiIndex] == oihw[oihwIndex])
    #expect(ohwi != oihw)
}
