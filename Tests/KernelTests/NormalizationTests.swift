import Testing
import TestSupport
import Kernels

/// Training-mode forward on copies of the running statistics; returns the output.
func batchNormTraining(rows: Int, channels: Int, _ x: [Float], _ gamma: [Float], _ beta: [Float]) -> [Float] {
    var y = [Float](repeating: .nan, count: x.count)
    var mean = [Float](repeating: 0, count: channels), invStd = mean
    var runningMean = [Float](repeating: 0, count: channels), runningVar = [Float](repeating: 1, count: channels)
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in mean.withUnsafeMutableBufferPointer { mp in
            invStd.withUnsafeMutableBufferPointer { ip in runningMean.withUnsafeMutableBufferPointer { rm in
                runningVar.withUnsafeMutableBufferPointer { rv in
                    batchNormForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                             gamma: gp.baseAddress!, beta: bp.baseAddress!, output: yp.baseAddress!,
                                             saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                             runningMean: rm.baseAddress!, runningVar: rv.baseAddress!,
                                             momentum: 0.1, eps: 1e-5)
                }
            } }
        } }
    } } }
    return y
}

/// 3 channels run only a short (3-lane) vector in the statistics and gradient sums;
/// 19 a full sixteen-lane one and a short one of 3.
@Test("BatchNorm training backward matches finite differences (input, gamma, beta)",
      arguments: [(2 * 3 * 5, 3), (4, 3), (12, 19)])
func batchNormGradient(rows: Int, channels: Int) {
    var rng = SplitMix64(seed: UInt64(30 + rows))
    var x = rng.array(rows * channels, scale: 2).map { $0 + 0.5 }
    var gamma: [Float] = (0..<channels).map { [1.2, -0.7, 0.4][$0 % 3] + 0.05 * Float($0 / 3) }
    var beta: [Float] = (0..<channels).map { [0.1, -0.3, 0.6][$0 % 3] }
    let r = rng.array(x.count)
    // Statistics from a real forward.
    var mean = [Float](repeating: 0, count: channels), invStd = mean
    var rm = [Float](repeating: 0, count: channels), rv = [Float](repeating: 1, count: channels)
    var y = [Float](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in mean.withUnsafeMutableBufferPointer { mp in
            invStd.withUnsafeMutableBufferPointer { ip in rm.withUnsafeMutableBufferPointer { rmp in
                rv.withUnsafeMutableBufferPointer { rvp in
                    batchNormForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                             gamma: gp.baseAddress!, beta: bp.baseAddress!, output: yp.baseAddress!,
                                             saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                             runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                             momentum: 0.1, eps: 1e-5)
                }
            } }
        } }
    } } }
    let gammaStart = rng.array(channels), betaStart = rng.array(channels)
    var gGamma = gammaStart, gBeta = betaStart
    var gX = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in r.withUnsafeBufferPointer { rp in
        mean.withUnsafeBufferPointer { mp in invStd.withUnsafeBufferPointer { ip in
            gX.withUnsafeMutableBufferPointer { gx in gGamma.withUnsafeMutableBufferPointer { gg in
                gBeta.withUnsafeMutableBufferPointer { gb in
                    batchNormBackward(rows: rows, channels: channels, input: xp.baseAddress!, gamma: gp.baseAddress!,
                                      saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!, gradOutput: rp.baseAddress!,
                                      gradInput: gx.baseAddress!, gradGamma: gg.baseAddress!, gradBeta: gb.baseAddress!)
                }
            } }
        } }
    } } }
    let g0 = gamma, b0 = beta, x0 = x
    let inputCheck = gradientCheck(input: &x, analytic: gX, h: 1e-2) {
        weightedSum(batchNormTraining(rows: rows, channels: channels, $0, g0, b0), r)
    }
    #expect(inputCheck.worst < gradientTolerance, "BN rows \(rows) x \(channels) gradInput: \(inputCheck)")
    let dGamma = zip(gGamma, gammaStart).map { $0 - $1 }, dBeta = zip(gBeta, betaStart).map { $0 - $1 }
    let gammaCheck = gradientCheck(input: &gamma, analytic: dGamma) {
        weightedSum(batchNormTraining(rows: rows, channels: channels, x0, $0, b0), r)
    }
    #expect(gammaCheck.worst < gradientTolerance, "BN rows \(rows) x \(channels) gradGamma: \(gammaCheck)")
    let betaCheck = gradientCheck(input: &beta, analytic: dBeta) {
        weightedSum(batchNormTraining(rows: rows, channels: channels, x0, g0, $0), r)
    }
    #expect(betaCheck.worst < gradientTolerance, "BN rows \(rows) x \(channels) gradBeta: \(betaCheck)")
}

@Test("BatchNorm running statistics after one step, and inference uses them")
func batchNormRunningStatistics() {
    let rows = 6, channels = 2
    var rng = SplitMix64(seed: 40)
    let x = rng.array(rows * channels, scale: 3).map { $0 + 10 }  // large offset: catches one-pass variance loss
    let gamma: [Float] = [0.5, 2], beta: [Float] = [1, -1]
    let rm0: [Float] = [0.2, -0.4], rv0: [Float] = [1.5, 0.8]
    var rm = rm0, rv = rv0
    var mean = [Float](repeating: 0, count: channels), invStd = mean
    var y = [Float](repeating: 0, count: x.count)
    let eps: Float = 1e-5
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in mean.withUnsafeMutableBufferPointer { mp in
            invStd.withUnsafeMutableBufferPointer { ip in rm.withUnsafeMutableBufferPointer { rmp in
                rv.withUnsafeMutableBufferPointer { rvp in
                    batchNormForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                             gamma: gp.baseAddress!, beta: bp.baseAddress!, output: yp.baseAddress!,
                                             saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                             runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                             momentum: 0.1, eps: eps)
                }
            } }
        } }
    } } }
    for c in 0..<channels {
        let column = (0..<rows).map { Double(x[$0 * channels + c]) }
        let mu = column.reduce(0, +) / Double(rows)
        let biased = column.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(rows)
        let unbiased = biased * Double(rows) / Double(rows - 1)
        #expect(abs(Double(mean[c]) - mu) < 1e-5)
        #expect(abs(Double(invStd[c]) - 1 / (biased + Double(eps)).squareRoot()) < 1e-5)
        #expect(abs(Double(rm[c]) - (0.9 * Double(rm0[c]) + 0.1 * mu)) < 1e-5, "running mean channel \(c)")
        #expect(abs(Double(rv[c]) - (0.9 * Double(rv0[c]) + 0.1 * unbiased)) < 1e-5, "running var channel \(c)")
        for r in 0..<rows {
            let expected = (column[r] - mu) / (biased + Double(eps)).squareRoot() * Double(gamma[c]) + Double(beta[c])
            #expect(abs(Double(y[r * channels + c]) - expected) < 1e-4, "training output (\(r), \(c))")
        }
    }
    // Inference normalises with the running statistics just updated.
    var z = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        rm.withUnsafeBufferPointer { rmp in rv.withUnsafeBufferPointer { rvp in z.withUnsafeMutableBufferPointer { zp in
            batchNormForwardInference(rows: rows, channels: channels, input: xp.baseAddress!, gamma: gp.baseAddress!,
                                      beta: bp.baseAddress!, runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                      eps: eps, output: zp.baseAddress!)
        } } }
    } } }
    for i in x.indices {
        let c = i % channels
        let expected = (Double(x[i]) - Double(rm[c])) / (Double(rv[c]) + Double(eps)).squareRoot() * Double(gamma[c]) + Double(beta[c])
        #expect(abs(Double(z[i]) - expected) < 1e-4 * max(1, abs(expected)), "inference output \(i)")
    }
}

@Test("BatchNorm statistics over many row blocks match a Double reference despite a large offset")
func batchNormManyBlocks() {
    let rows = 3001, channels = 64  // several statistics blocks and a ragged last one
    var rng = SplitMix64(seed: 41)
    let x = (0..<(rows * channels)).map { i in 100 + Float(i % channels) + rng.nextSigned() * 0.5 }
    let gamma = [Float](repeating: 1, count: channels), beta = [Float](repeating: 0, count: channels)
    var mean = [Float](repeating: 0, count: channels), invStd = mean
    var rm = [Float](repeating: 0, count: channels), rv = [Float](repeating: 1, count: channels)
    var y = [Float](repeating: 0, count: x.count)
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in mean.withUnsafeMutableBufferPointer { mp in
            invStd.withUnsafeMutableBufferPointer { ip in rm.withUnsafeMutableBufferPointer { rmp in
                rv.withUnsafeMutableBufferPointer { rvp in
                    batchNormForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                             gamma: gp.baseAddress!, beta: bp.baseAddress!, output: yp.baseAddress!,
                                             saveMean: mp.baseAddress!, saveInvStd: ip.baseAddress!,
                                             runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                             momentum: 0.1, eps: 1e-5)
                }
            } }
        } }
    } } }
    for c in 0..<channels {
        var sum = 0.0
        for r in 0..<rows { sum += Double(x[r * channels + c]) }
        let mu = sum / Double(rows)
        var m2 = 0.0
        for r in 0..<rows { let d = Double(x[r * channels + c]) - mu; m2 += d * d }
        let variance = m2 / Double(rows)
        #expect(abs(Double(mean[c]) - mu) < 1e-5 * abs(mu), "mean channel \(c)")
        let expectedInvStd = 1 / (variance + 1e-5).squareRoot()
        #expect(abs(Double(invStd[c]) - expectedInvStd) < 1e-4 * expectedInvStd, "invStd channel \(c): \(invStd[c]) vs \(expectedInvStd)")
    }
}

/// 7 channels: one short vector; 37: two full sixteen-lane vectors and a short one of 5
/// (the masked vector gradient sums against the unmasked ones, bit for bit).
@Test("fused BatchNorm+ReLU equals BatchNorm then ReLU, forward (training, inference) and backward", arguments: [7, 37])
func batchNormReLUFusedMatchesComposition(channels: Int) {
    let rows = 300
    var rng = SplitMix64(seed: 42)
    let x = rng.array(rows * channels, scale: 2), g = rng.array(rows * channels)
    let gamma = rng.array(channels), beta = rng.array(channels, scale: 0.5)
    let count = rows * channels
    // Separate: BN, ReLU; ReLU backward, BN backward.
    var yBN = [Float](repeating: 0, count: count), ySep = yBN, yFused = yBN
    var mean = [Float](repeating: 0, count: channels), invStd = mean, mean2 = mean, invStd2 = mean
    var rm = [Float](repeating: 0, count: channels), rv = [Float](repeating: 1, count: channels), rm2 = rm, rv2 = rv
    var gGamma = [Float](repeating: 0, count: channels), gBeta = gGamma, gGamma2 = gGamma, gBeta2 = gGamma
    var gMasked = [Float](repeating: 0, count: count), gX = gMasked, gX2 = gMasked
    var zSep = [Float](repeating: 0, count: count), zFused = zSep
    x.withUnsafeBufferPointer { xp in gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
    g.withUnsafeBufferPointer { gop in
        let xa = xp.baseAddress!, ga = gp.baseAddress!, ba = bp.baseAddress!, goa = gop.baseAddress!
        yBN.withUnsafeMutableBufferPointer { y in ySep.withUnsafeMutableBufferPointer { ys in yFused.withUnsafeMutableBufferPointer { yf in
        mean.withUnsafeMutableBufferPointer { m in invStd.withUnsafeMutableBufferPointer { i in
        mean2.withUnsafeMutableBufferPointer { m2 in invStd2.withUnsafeMutableBufferPointer { i2 in
        rm.withUnsafeMutableBufferPointer { rmp in rv.withUnsafeMutableBufferPointer { rvp in
        rm2.withUnsafeMutableBufferPointer { rmp2 in rv2.withUnsafeMutableBufferPointer { rvp2 in
            batchNormForwardTraining(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba, output: y.baseAddress!,
                                     saveMean: m.baseAddress!, saveInvStd: i.baseAddress!, runningMean: rmp.baseAddress!,
                                     runningVar: rvp.baseAddress!, momentum: 0.1, eps: 1e-5)
            reluForward(count: count, input: y.baseAddress!, output: ys.baseAddress!)
            batchNormReLUForwardTraining(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba, output: yf.baseAddress!,
                                         saveMean: m2.baseAddress!, saveInvStd: i2.baseAddress!, runningMean: rmp2.baseAddress!,
                                         runningVar: rvp2.baseAddress!, momentum: 0.1, eps: 1e-5)
            gMasked.withUnsafeMutableBufferPointer { gm in gX.withUnsafeMutableBufferPointer { gx in gX2.withUnsafeMutableBufferPointer { gx2 in
            gGamma.withUnsafeMutableBufferPointer { gg in gBeta.withUnsafeMutableBufferPointer { gb in
            gGamma2.withUnsafeMutableBufferPointer { gg2 in gBeta2.withUnsafeMutableBufferPointer { gb2 in
                reluBackward(count: count, output: ys.baseAddress!, gradOutput: goa, gradInput: gm.baseAddress!)
                batchNormBackward(rows: rows, channels: channels, input: xa, gamma: ga, saveMean: m.baseAddress!,
                                  saveInvStd: i.baseAddress!, gradOutput: gm.baseAddress!, gradInput: gx.baseAddress!,
                                  gradGamma: gg.baseAddress!, gradBeta: gb.baseAddress!)
                batchNormReLUBackward(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba,
                                      saveMean: m2.baseAddress!, saveInvStd: i2.baseAddress!, gradOutput: goa,
                                      gradInput: gx2.baseAddress!, gradGamma: gg2.baseAddress!, gradBeta: gb2.baseAddress!)
            } } } } } } }
            zSep.withUnsafeMutableBufferPointer { zs in zFused.withUnsafeMutableBufferPointer { zf in
                batchNormForwardInference(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba,
                                          runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!, eps: 1e-5, output: zs.baseAddress!)
                reluForward(count: count, input: zs.baseAddress!, output: zs.baseAddress!)
                batchNormReLUForwardInference(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba,
                                              runningMean: rmp2.baseAddress!, runningVar: rvp2.baseAddress!, eps: 1e-5,
                                              output: zf.baseAddress!)
            } }
        } } } } } } } } } } }
    } } } }
    #expect(ySep == yFused)
    #expect(ySep.contains { $0 == 0 } && ySep.contains { $0 > 0 })
    #expect(rm == rm2 && rv == rv2)
    #expect(zSep == zFused)
    #expect(gGamma == gGamma2 && gBeta == gBeta2)
    let worst = zip(gX, gX2).map { abs($0 - $1) }.max()!
    #expect(worst <= 1e-6, "gradInput differs by \(worst)")
}

@Test("fused BatchNorm + residual (+ ReLU) is bit for bit BatchNorm, add, ReLU (training and inference)",
      arguments: [false, true])
func batchNormAddFusedMatchesComposition(relu: Bool) {
    let rows = 257, channels = 19, count = rows * channels
    var rng = SplitMix64(seed: relu ? 43 : 44)
    let x = rng.array(count, scale: 3), residual = rng.array(count, scale: 2)
    let gamma = rng.array(channels), beta = rng.array(channels, scale: 0.5)
    /// (training output, running mean, running var, inference output) of one form.
    func run(fused: Bool) -> ([Float], [Float], [Float], [Float]) {
        var y = [Float](repeating: .nan, count: count), z = y
        var mean = [Float](repeating: 0, count: channels), invStd = mean, rm = mean
        var rv = [Float](repeating: 1, count: channels)
        x.withUnsafeBufferPointer { xp in residual.withUnsafeBufferPointer { rp in
        gamma.withUnsafeBufferPointer { gp in beta.withUnsafeBufferPointer { bp in
        y.withUnsafeMutableBufferPointer { yp in z.withUnsafeMutableBufferPointer { zp in
        mean.withUnsafeMutableBufferPointer { m in invStd.withUnsafeMutableBufferPointer { i in
        rm.withUnsafeMutableBufferPointer { rmp in rv.withUnsafeMutableBufferPointer { rvp in
            let xa = xp.baseAddress!, ra = rp.baseAddress!, ga = gp.baseAddress!, ba = bp.baseAddress!
            if fused {
                batchNormAddForwardTraining(rows: rows, channels: channels, input: xa, residual: ra, gamma: ga, beta: ba,
                                            output: yp.baseAddress!, saveMean: m.baseAddress!, saveInvStd: i.baseAddress!,
                                            runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                            momentum: 0.1, eps: 1e-5, relu: relu)
                batchNormAddForwardInference(rows: rows, channels: channels, input: xa, residual: ra, gamma: ga, beta: ba,
                                             runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!, eps: 1e-5,
                                             output: zp.baseAddress!, relu: relu)
            } else {
                batchNormForwardTraining(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba,
                                         output: yp.baseAddress!, saveMean: m.baseAddress!, saveInvStd: i.baseAddress!,
                                         runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!, momentum: 0.1, eps: 1e-5)
                add(count: count, yp.baseAddress!, ra, into: yp.baseAddress!)
                if relu { reluForward(count: count, input: yp.baseAddress!, output: yp.baseAddress!) }
                batchNormForwardInference(rows: rows, channels: channels, input: xa, gamma: ga, beta: ba,
                                          runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!, eps: 1e-5,
                                          output: zp.baseAddress!)
                add(count: count, zp.baseAddress!, ra, into: zp.baseAddress!)
                if relu { reluForward(count: count, input: zp.baseAddress!, output: zp.baseAddress!) }
            }
        } } } } } } } } } }
        return (y, rm, rv, z)
    }
    let separate = run(fused: false), fused = run(fused: true)
    #expect(fused.0 == separate.0, "training output")
    #expect(fused.1 == separate.1 && fused.2 == separate.2, "running statistics")
    #expect(fused.3 == separate.3, "inference output")
    // The residual really was added (and, with ReLU, some sums were cut to zero).
    #expect(fused.0.contains { $0 < 0 } == !relu)
    #expect(fused.0.contains { $0 == 0 } == relu)
}

@Test("BatchNorm + a second BatchNorm's output formed in the same pass is bit for bit both forwards, add, ReLU",
      arguments: [false, true])
func batchNormAddNormalisedResidualMatchesComposition(relu: Bool) {
    let rows = 257, channels = 37, count = rows * channels
    var rng = SplitMix64(seed: relu ? 45 : 46)
    let x = rng.array(count, scale: 3), d = rng.array(count, scale: 2)
    let gamma = rng.array(channels), beta = rng.array(channels, scale: 0.5)
    let dGamma = rng.array(channels), dBeta = rng.array(channels, scale: 0.5)
    /// (output, saved mean and inverse std of both, running statistics of both) of one form.
    func run(fused: Bool) -> [[Float]] {
        var y = [Float](repeating: .nan, count: count), db = y
        var mean = [Float](repeating: 0, count: channels), invStd = mean, rm = mean, dMean = mean, dInvStd = mean, dRm = mean
        var rv = [Float](repeating: 1, count: channels), dRv = rv
        x.withUnsafeBufferPointer { xp in d.withUnsafeBufferPointer { dp in
        y.withUnsafeMutableBufferPointer { yp in db.withUnsafeMutableBufferPointer { dbp in
        mean.withUnsafeMutableBufferPointer { m in invStd.withUnsafeMutableBufferPointer { i in
        rm.withUnsafeMutableBufferPointer { rmp in rv.withUnsafeMutableBufferPointer { rvp in
        dMean.withUnsafeMutableBufferPointer { dm in dInvStd.withUnsafeMutableBufferPointer { di in
        dRm.withUnsafeMutableBufferPointer { drm in dRv.withUnsafeMutableBufferPointer { drv in
            if fused {
                batchNormStatisticsTraining(rows: rows, channels: channels, input: dp.baseAddress!, saveMean: dm.baseAddress!,
                                            saveInvStd: di.baseAddress!, runningMean: drm.baseAddress!,
                                            runningVar: drv.baseAddress!, momentum: 0.1, eps: 1e-5)
                batchNormAddForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                            residualInput: dp.baseAddress!, residualMean: dm.baseAddress!,
                                            residualInvStd: di.baseAddress!, residualGamma: dGamma, residualBeta: dBeta,
                                            gamma: gamma, beta: beta, output: yp.baseAddress!, saveMean: m.baseAddress!,
                                            saveInvStd: i.baseAddress!, runningMean: rmp.baseAddress!,
                                            runningVar: rvp.baseAddress!, momentum: 0.1, eps: 1e-5, relu: relu)
            } else {
                batchNormForwardTraining(rows: rows, channels: channels, input: dp.baseAddress!, gamma: dGamma, beta: dBeta,
                                         output: dbp.baseAddress!, saveMean: dm.baseAddress!, saveInvStd: di.baseAddress!,
                                         runningMean: drm.baseAddress!, runningVar: drv.baseAddress!, momentum: 0.1, eps: 1e-5)
                batchNormAddForwardTraining(rows: rows, channels: channels, input: xp.baseAddress!,
                                            residual: UnsafePointer(dbp.baseAddress!), gamma: gamma, beta: beta,
                                            output: yp.baseAddress!, saveMean: m.baseAddress!, saveInvStd: i.baseAddress!,
                                            runningMean: rmp.baseAddress!, runningVar: rvp.baseAddress!,
                                            momentum: 0.1, eps: 1e-5, relu: relu)
            }
        } } } } } } } } } } } }
        return [y, mean, invStd, rm, rv, dMean, dInvStd, dRm, dRv]
    }
    let separate = run(fused: false), fused = run(fused: true)
    for (i, (f, s)) in zip(fused, separate).enumerated() {
        #expect(f.elementsEqual(s), "result \(i) first differs at \(Array(zip(f, s)).firstIndex { $0 != $1 } ?? -1)")
    }
    // The separate form adds a real map (BN of d), so equality means the fused pass formed it.
    #expect(fused[0].contains { $0 < 0 } == !relu)
    #expect(fused[0].contains { $0 == 0 } == relu && fused[0].contains { $0 > 0 })
}

@Test("ReLU backward fused with one or two BatchNorms' gradient sums is bit for bit ReLU backward, then each BatchNorm backward",
      arguments: [1, 2], [1, 2])
func reluBackwardWithSumsMatchesComposition(batchNorms: Int, threads: Int) {
    setComputeThreads(threads)
    defer { setComputeThreads(1) }
    // 37 channels: two full vectors and a short one; 4000 rows: 9 blocks and a part, work
    // enough (148,000 floats) for two threads to split it.
    let rows = 4000, channels = 37, count = rows * channels
    var rng = SplitMix64(seed: UInt64(10 * batchNorms + threads))
    let out = rng.array(count), gOut = rng.array(count)
    let xs = (0..<batchNorms).map { _ in rng.array(count, scale: 2) }
    let gammas = (0..<batchNorms).map { _ in rng.array(channels) }
    /// Per BatchNorm: (input gradient, gamma gradient, beta gradient); then the masked gradient.
    func run(fused: Bool) -> [[Float]] {
        var masked = gOut, results: [[Float]] = []
        var means = [[Float]](), invStds = [[Float]]()
        for x in xs {  // statistics as a forward would have saved them
            var m = [Float](repeating: 0, count: channels), i = m, rm = m, rv = [Float](repeating: 1, count: channels)
            var y = x
            batchNormForwardTraining(rows: rows, channels: channels, input: x, gamma: gammas[0], beta: gammas[0], output: &y,
                                     saveMean: &m, saveInvStd: &i, runningMean: &rm, runningVar: &rv, momentum: 0.1, eps: 1e-5)
            means.append(m); invStds.append(i)
        }
        var sums: [BatchNormGradientSums]?
        masked.withUnsafeMutableBufferPointer { g in
            if fused {
                sums = xs[0].withUnsafeBufferPointer { x0 in means[0].withUnsafeBufferPointer { m0 in
                    xs[batchNorms - 1].withUnsafeBufferPointer { x1 in means[batchNorms - 1].withUnsafeBufferPointer { m1 in
                        reluBackwardWithBatchNormSums(rows: rows, channels: channels, output: out, gradOutput: g.baseAddress!,
                                                      gradInput: g.baseAddress!, first: (x0.baseAddress!, m0.baseAddress!),
                                                      second: batchNorms > 1 ? (x1.baseAddress!, m1.baseAddress!) : nil)
                    } } } }
            } else {
                reluBackward(count: count, output: out, gradOutput: g.baseAddress!, gradInput: g.baseAddress!)
            }
        }
        for b in 0..<batchNorms {
            var gIn = [Float](repeating: .nan, count: count)
            var gGamma = [Float](repeating: 0.5, count: channels), gBeta = gGamma
            if let sums {
                batchNormBackward(rows: rows, channels: channels, input: xs[b], gamma: gammas[b], saveMean: means[b],
                                  saveInvStd: invStds[b], gradOutput: masked, gradInput: &gIn, gradGamma: &gGamma,
                                  gradBeta: &gBeta, sums: sums[b])
            } else {
                batchNormBackward(rows: rows, channels: channels, input: xs[b], gamma: gammas[b], saveMean: means[b],
                                  saveInvStd: invStds[b], gradOutput: masked, gradInput: &gIn, gradGamma: &gGamma,
                                  gradBeta: &gBeta)
            }
            results += [gIn, gGamma, gBeta]
        }
        return results + [masked]
    }
    let separate = run(fused: false), fused = run(fused: true)
    for (i, (f, s)) in zip(fused, separate).enumerated() {
        #expect(f.elementsEqual(s), "result \(i) first differs at \(Array(zip(f, s)).firstIndex { $0 != $1 } ?? -1)")
    }
    // The mask cut some gradients, and every BatchNorm's input gradient is finite and not all zero.
    #expect(fused.last!.contains { $0 == 0 } && fused.last!.contains { $0 != 0 })
    #expect(fused.dropLast().allSatisfy { $0.allSatisfy(\.isFinite) && $0.contains { $0 != 0 } })
}
