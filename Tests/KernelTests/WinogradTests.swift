import Foundation
import Testing
import TestSupport
@testable import Kernels

// Winograd F(2x2, 3x3) against the im2col + GEMM path and a direct convolution.

/// 3x3/1 pad 1 shapes: odd and even sizes (partial edge tiles), 1x1 and 1xN maps,
/// channel counts that are not multiples of the 8-wide vectors, Cin != Cout.
let winogradCases: [Conv2DShape] = [
    Conv2DShape(batch: 3, inHeight: 7, inWidth: 5, inChannels: 3, outChannels: 5, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 2, inHeight: 6, inWidth: 4, inChannels: 16, outChannels: 8, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 5, inHeight: 5, inWidth: 9, inChannels: 13, outChannels: 21, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 2, inHeight: 1, inWidth: 1, inChannels: 9, outChannels: 4, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 4, inHeight: 1, inWidth: 6, inChannels: 24, outChannels: 24, kernel: 3, stride: 1, padding: 1),
    Conv2DShape(batch: 2, inHeight: 8, inWidth: 4, inChannels: 40, outChannels: 32, kernel: 3, stride: 1, padding: 1),
]

/// Runs `body` with a NaN-filled float buffer of `count` floats.
func withScratch<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    var buffer = [Float](repeating: .nan, count: max(1, count))
    return buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// Largest |a - b| over the largest |b|.
func relativeWorst(_ a: [Float], _ b: [Float]) -> Float {
    let scale = b.map(abs).max() ?? 1
    return zip(a, b).map { abs($0 - $1) }.max()! / max(scale, 1e-30)
}

@Test("Winograd forward equals im2col + GEMM and a direct convolution", arguments: winogradCases.indices, [false, true])
func winogradForwardMatches(caseIndex: Int, withBias: Bool) {
    let s = winogradCases[caseIndex]
    var rng = SplitMix64(seed: UInt64(300 + caseIndex))
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5)
    let b: [Float]? = withBias ? rng.array(s.outChannels) : nil
    let viaGemm = convForward(s, x, w, b, chunk: s.imagesPerChunk)
    let naive = naiveConv(s, input: x, weight: w, bias: b).map(Float.init)
    for chunk in Set([1, 2, s.batch, s.winogradImagesPerChunk]) {
        var out = [Float](repeating: .nan, count: s.outputCount)
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in out.withUnsafeMutableBufferPointer { op in
            withScratch(s.winogradPassCount(images: chunk)) { ws in
                let bias = b?.withUnsafeBufferPointer { $0.baseAddress! }
                winogradConv3x3(s, input: xp.baseAddress!, weight: wp.baseAddress!, flipped: false, bias: bias,
                                output: op.baseAddress!, workspace: ws, imagesPerChunk: chunk)
            }
        } } }
        #expect(relativeWorst(out, viaGemm) < 1e-5, "\(s.summary) chunk \(chunk) vs GEMM: \(relativeWorst(out, viaGemm))")
        #expect(relativeWorst(out, naive) < 1e-5, "\(s.summary) chunk \(chunk) vs direct: \(relativeWorst(out, naive))")
    }
}

@Test("Winograd backward: input and weight gradients equal im2col + GEMM's (accumulated onto what was there), bias unchanged",
      arguments: winogradCases.indices)
func winogradBackwardMatches(caseIndex: Int) {
    let s = winogradCases[caseIndex]
    var rng = SplitMix64(seed: UInt64(400 + caseIndex))
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5), r = rng.array(s.outputCount)
    let weightStart = rng.array(s.weightCount), biasStart = rng.array(s.outChannels)
    /// (gradInput, gradWeight, gradBias) by the GEMM path or Winograd with `chunk` images per chunk.
    func backward(winogradChunk: Int?) -> ([Float], [Float], [Float]) {
        var gX = [Float](repeating: .nan, count: s.inputCount), gW = weightStart, gB = biasStart
        let count = max(s.workspaceCount, s.channelsSwapped.winogradPassCount(images: winogradChunk ?? 0),
                        s.winogradWeightGradientCount(images: winogradChunk ?? 0))
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
            gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
                gB.withUnsafeMutableBufferPointer { gb in
                    withScratch(count) { ws in
                        conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                                       gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!, gradBias: gb.baseAddress!,
                                       workspace: ws, imagesPerChunk: s.imagesPerChunk,
                                       winogradImagesPerChunk: winogradChunk)
                    }
                }
            } }
        } } }
        return (gX, gW, gB)
    }
    let (gemmX, gemmW, gemmB) = backward(winogradChunk: nil)
    // The point-major path with its chunks (the entry points run these small shapes
    // blocked: WinogradBlockedTests).
    Conv2DShape.forcedBlockedTiles = 0
    defer { Conv2DShape.forcedBlockedTiles = nil }
    for chunk in Set([1, 2, s.batch]) {
        let (winoX, winoW, winoB) = backward(winogradChunk: chunk)
        #expect(relativeWorst(winoX, gemmX) < 1e-5, "\(s.summary) chunk \(chunk): gradInput \(relativeWorst(winoX, gemmX))")
        #expect(relativeWorst(winoW, gemmW) < 1e-5, "\(s.summary) chunk \(chunk): gradWeight \(relativeWorst(winoW, gemmW))")
        #expect(winoB == gemmB, "\(s.summary): the bias gradient is the same column sum")
        // The weight gradient is accumulated: subtracting the starting values leaves
        // the gradient alone, which must not be lost in the start's magnitude.
        let gradOnly = zip(winoW, weightStart).map { $0 - $1 }, gemmOnly = zip(gemmW, weightStart).map { $0 - $1 }
        #expect(relativeWorst(gradOnly, gemmOnly) < 1e-4, "\(s.summary) chunk \(chunk): gradWeight alone")
    }
}

@Test("Winograd through the public entry points, on 1 to 5 threads")
func winogradPublicEntryPoints() {
    let s = Conv2DShape(batch: 9, inHeight: 9, inWidth: 6, inChannels: 24, outChannels: 16, kernel: 3, stride: 1, padding: 1)
    var rng = SplitMix64(seed: 9)
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.5), r = rng.array(s.outputCount)
    let saved = ComputePool.minimumWork
    ComputePool.minimumWork = 1
    defer { setComputeThreads(1); ComputePool.minimumWork = saved }
    // Runs blocked F(4x4, 3x3) (WinogradBlockedTests); 3 threads take uneven runs of blocks.
    for threads in [1, 2, 3, 5] {
    setComputeThreads(threads)
    var results: [ConvAlgorithm: ([Float], [Float], [Float])] = [:]
    for algorithm in ConvAlgorithm.allCases {
        var y = [Float](repeating: .nan, count: s.outputCount), gX = [Float](repeating: .nan, count: s.inputCount)
        var gW = [Float](repeating: 0, count: s.weightCount)
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
            y.withUnsafeMutableBufferPointer { yp in gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
                withScratch(s.workspaceCount(algorithm)) { ws in
                    conv2DForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: nil, output: yp.baseAddress!,
                                  workspace: ws, algorithm: algorithm)
                    conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                                   gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!, gradBias: nil,
                                   workspace: ws, algorithm: algorithm)
                }
            } } }
        } } }
        results[algorithm] = (y, gX, gW)
    }
    let gemm = results[.gemm]!, wino = results[.winograd]!
    #expect(relativeWorst(wino.0, gemm.0) < 1e-5, "\(threads) threads")
    #expect(relativeWorst(wino.1, gemm.1) < 1e-5, "\(threads) threads")
    #expect(relativeWorst(wino.2, gemm.2) < 1e-5, "\(threads) threads: gradWeight")
    #expect(wino.0 != gemm.0, "the Winograd path must actually have run (its rounding differs)")
    }
}

@Test("algorithm choice: Winograd only for 3x3/1 pad 1; gemm policy turns it off; auto from 64 channels")
func winogradChoice() {
    let eligible = Conv2DShape(batch: 64, inHeight: 16, inWidth: 8, inChannels: 256, outChannels: 256, kernel: 3, stride: 1, padding: 1)
    var strided = eligible; strided.stride = 2
    var pointwise = eligible; pointwise.kernel = 1; pointwise.padding = 0
    var narrow = eligible; narrow.inChannels = 32; narrow.outChannels = 64
    var stage1 = eligible; stage1.inChannels = 64; stage1.outChannels = 64
    #expect(ConvAlgorithm.chosen(for: eligible, policy: .winograd) == .winograd)
    #expect(ConvAlgorithm.chosen(for: eligible, policy: .gemm) == .gemm)
    #expect(ConvAlgorithm.chosen(for: eligible, policy: .auto) == .winograd)
    #expect(ConvAlgorithm.chosen(for: narrow, policy: .winograd) == .winograd)
    #expect(ConvAlgorithm.chosen(for: narrow, policy: .auto) == .gemm)
    #expect(ConvAlgorithm.chosen(for: stage1, policy: .auto) == .winograd)
    for s in [strided, pointwise] {
        for policy in ConvAlgorithm.Policy.allCases { #expect(ConvAlgorithm.chosen(for: s, policy: policy) == .gemm) }
        #expect(s.workspaceCount(.winograd) == s.workspaceCount)
    }
    #expect(eligible.workspaceCount(.winograd) >= eligible.workspaceCount)
    #expect(eligible.workspaceCount(.winograd) >= eligible.winogradPassCount(images: eligible.winogradImagesPerChunk))
}

/// Per-shape timing of the two algorithms on the ResNet-50 stride-1 3x3 shapes at
/// 256x128, batch 64, two threads (the figures behind `winogradMeasuredFaster`).
/// Opt-in: `MANCS_WINOGRAD_TIMING=1 swift test -c release ... --filter winogradTiming`.
@Test("Winograd vs im2col + GEMM timing on the network's shapes (opt-in)",
      .enabled(if: ProcessInfo.processInfo.environment["MANCS_WINOGRAD_TIMING"] != nil))
func winogradTiming() {
    setComputeThreads(2)
    defer { setComputeThreads(1) }
    let shapes = [(64, 32, 64), (32, 16, 128), (16, 8, 256), (8, 4, 512)].map { h, w, c in
        Conv2DShape(batch: 64, inHeight: h, inWidth: w, inChannels: c, outChannels: c, kernel: 3, stride: 1, padding: 1)
    }
    for s in shapes {
        var line = "\(s.inHeight)x\(s.inWidth)x\(s.inChannels):"
        var outputs: [[Float]] = []
        for algorithm in ConvAlgorithm.allCases {
            let run = timeConvolution(s, algorithm: algorithm, repetitions: 4)
            outputs.append(run.outputs)
            line += " \(algorithm.rawValue) forward \(String(format: "%.1f", run.best[0].forward)) ms, backward \(String(format: "%.1f", run.best[0].backward)) ms;"
        }
        print(line)
        #expect(relativeWorst(outputs[1], outputs[0]) < 1e-4)
    }
}

/// Times forward and backward of `s` by `algorithm` on seeded data (threads as the
/// caller set them), `repetitions` times. `configure(rep)` prepares a repetition (e.g.
/// switches kernels) and names its slot in 0..<slots; repetitions before `warmUp` are
/// not counted. Returns the best forward and backward ms per slot, and the last
/// output, input gradient and weight gradient, concatenated.
func timeConvolution(
    _ s: Conv2DShape, algorithm: ConvAlgorithm, repetitions: Int, warmUp: Int = 0, slots: Int = 1,
    configure: (Int) -> Int = { _ in 0 }
) -> (best: [(forward: Double, backward: Double)], outputs: [Float]) {
    var rng = SplitMix64(seed: 1)
    let x = rng.array(s.inputCount), w = rng.array(s.weightCount, scale: 0.05), r = rng.array(s.outputCount)
    var y = [Float](repeating: 0, count: s.outputCount), gX = [Float](repeating: 0, count: s.inputCount)
    var gW = [Float](repeating: 0, count: s.weightCount)
    var best = [(forward: Double, backward: Double)](repeating: (.infinity, .infinity), count: slots)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        y.withUnsafeMutableBufferPointer { yp in gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
            withScratch(s.workspaceCount(algorithm)) { ws in
                for rep in 0..<repetitions {
                    let slot = configure(rep)
                    gw.baseAddress!.update(repeating: 0, count: s.weightCount)  // backward accumulates into it
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    conv2DForward(s, input: xp.baseAddress!, weight: wp.baseAddress!, bias: nil, output: yp.baseAddress!,
                                  workspace: ws, algorithm: algorithm)
                    let t1 = DispatchTime.now().uptimeNanoseconds
                    conv2DBackward(s, input: xp.baseAddress!, weight: wp.baseAddress!, gradOutput: rp.baseAddress!,
                                   gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!, gradBias: nil,
                                   workspace: ws, algorithm: algorithm)
                    let t2 = DispatchTime.now().uptimeNanoseconds
                    guard rep >= warmUp else { continue }
                    best[slot] = (min(best[slot].forward, Double(t1 - t0) * 1e-6), min(best[slot].backward, Double(t2 - t1) * 1e-6))
                }
            }
        } } }
    } } }
    return (best, y + gX + gW)
}

@Test("MANCS_CONV_ALGORITHM: unset or empty is auto, names any case, anything else a readable error")
func convAlgorithmEnvironment() throws {
    let saved = ProcessInfo.processInfo.environment["MANCS_CONV_ALGORITHM"]
    defer { if let saved { setenv("MANCS_CONV_ALGORITHM", saved, 1) } else { unsetenv("MANCS_CONV_ALGORITHM") } }
    unsetenv("MANCS_CONV_ALGORITHM")
    #expect(try ConvAlgorithm.policyFromEnvironment() == .auto)
    for (value, expected) in [("", ConvAlgorithm.Policy.auto), ("gemm", .gemm), ("Winograd", .winograd), ("auto", .auto)] {
        setenv("MANCS_CONV_ALGORITHM", value, 1)
        #expect(try ConvAlgorithm.policyFromEnvironment() == expected, "\(value)")
    }
    setenv("MANCS_CONV_ALGORITHM", "fast", 1)
    #expect(throws: ConvAlgorithmError.self) { try ConvAlgorithm.policyFromEnvironment() }
    #expect("\(ConvAlgorithmError(value: "fast"))" == "MANCS_CONV_ALGORITHM=fast: expected one of gemm, winograd, auto")
}
