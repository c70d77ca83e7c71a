import Foundation
import Testing
import TestSupport
import Kernels

// MARK: Runners (forward as a function of arrays)

func relu(_ x: [Float]) -> [Float] {
    var y = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
        reluForward(count: x.count, input: xp.baseAddress!, output: yp.baseAddress!)
    } }
    return y
}

func prelu(rows: Int, channels: Int, _ x: [Float], _ w: [Float]) -> [Float] {
    var y = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
        preluForward(rows: rows, channels: channels, input: xp.baseAddress!, weight: wp.baseAddress!, output: yp.baseAddress!)
    } } }
    return y
}

func sigmoid(_ x: [Float]) -> [Float] {
    var y = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
        sigmoidForward(count: x.count, input: xp.baseAddress!, output: yp.baseAddress!)
    } }
    return y
}

// MARK: ReLU

@Test("ReLU forward clamps, backward matches finite differences (from the output)")
func reluGradient() {
    var rng = SplitMix64(seed: 21)
    var x = awayFromZero(60, rng: &rng)
    let r = rng.array(x.count)
    let y = relu(x)
    #expect(zip(x, y).allSatisfy { $1 == max($0, 0) })
    var g = [Float](repeating: .nan, count: x.count)
    y.withUnsafeBufferPointer { yp in r.withUnsafeBufferPointer { rp in g.withUnsafeMutableBufferPointer { gp in
        reluBackward(count: x.count, output: yp.baseAddress!, gradOutput: rp.baseAddress!, gradInput: gp.baseAddress!)
    } } }
    let check = gradientCheck(input: &x, analytic: g) { weightedSum(relu($0), r) }
    #expect(check.worst < gradientTolerance, "ReLU gradInput: \(check)")
    // In place is allowed for both directions.
    var inPlace = x
    inPlace.withUnsafeMutableBufferPointer { p in reluForward(count: p.count, input: p.baseAddress!, output: p.baseAddress!) }
    #expect(inPlace == y)
    var gInPlace = r
    y.withUnsafeBufferPointer { yp in gInPlace.withUnsafeMutableBufferPointer { p in
        reluBackward(count: p.count, output: yp.baseAddress!, gradOutput: p.baseAddress!, gradInput: p.baseAddress!)
    } }
    #expect(gInPlace == g)
}

// MARK: PReLU

@Test("PReLU backward matches finite differences (input, weight)")
func preluGradient() {
    let rows = 10, channels = 3
    var rng = SplitMix64(seed: 22)
    var x = awayFromZero(rows * channels, rng: &rng)
    var w = [Float(0.25), -0.5, 1.5]
    let r = rng.array(x.count)
    let weightStart = rng.array(channels)
    var gW = weightStart
    var gX = [Float](repeating: .nan, count: x.count)
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in r.withUnsafeBufferPointer { rp in
        gX.withUnsafeMutableBufferPointer { gx in gW.withUnsafeMutableBufferPointer { gw in
            preluBackward(rows: rows, channels: channels, input: xp.baseAddress!, weight: wp.baseAddress!,
                          gradOutput: rp.baseAddress!, gradInput: gx.baseAddress!, gradWeight: gw.baseAddress!)
        } }
    } } }
    let y = prelu(rows: rows, channels: channels, x, w)
    for i in x.indices { #expect(y[i] == (x[i] > 0 ? x[i] : w[i % channels] * x[i])) }
    let wFixed = w
    let inputCheck = gradientCheck(input: &x, analytic: gX) { weightedSum(prelu(rows: rows, channels: channels, $0, wFixed), r) }
    #expect(inputCheck.worst < gradientTolerance, "PReLU gradInput: \(inputCheck)")
    let xFixed = x
    let dW = zip(gW, weightStart).map { $0 - $1 }
    let weightCheck = gradientCheck(input: &w, analytic: dW) { weightedSum(prelu(rows: rows, channels: channels, xFixed, $0), r) }
    #expect(weightCheck.worst < gradientTolerance, "PReLU gradWeight: \(weightCheck)")
}

// MARK: Sigmoid

@Test("sigmoid backward matches finite differences")
func sigmoidGradient() {
    var rng = SplitMix64(seed: 23)
    var x = rng.array(50, scale: 4)
    let r = rng.array(x.count)
    let y = sigmoid(x)
    var g = [Float](repeating: .nan, count: x.count)
    y.withUnsafeBufferPointer { yp in r.withUnsafeBufferPointer { rp in g.withUnsafeMutableBufferPointer { gp in
        sigmoidBackward(count: x.count, output: yp.baseAddress!, gradOutput: rp.baseAddress!, gradInput: gp.baseAddress!)
    } } }
    let check = gradientCheck(input: &x, analytic: g) { weightedSum(sigmoid($0), r) }
    #expect(check.worst < gradientTolerance, "sigmoid gradInput: \(check)")
}

@Test("sigmoid is finite and correct for large |x|")
func sigmoidExtremes() {
    let x: [Float] = [-1e30, -1000, -100, -20, 0, 20, 100, 1000, 1e30, -.infinity, .infinity]
    let y = sigmoid(x)
    #expect(y.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 }, "\(y)")
    #expect(y[0] == 0 && y[1] == 0 && y[8] == 1 && y[7] == 1 && y[9] == 0 && y[10] == 1)
    #expect(y[4] == 0.5)
    // Small outputs keep their relative precision: sigmoid(-20) = e^-20 / (1 + e^-20).
    let expected = exp(-20.0) / (1 + exp(-20.0))
    #expect(abs(Double(y[3]) - expected) / expected < 1e-5)
    #expect(abs(Double(y[5]) - 1 / (1 + exp(-20.0))) < 1e-7)
    // Relative accuracy across the range (the exp is a polynomial, not libm's).
    let grid = stride(from: Float(-86), through: 30, by: 0.173).map { $0 }
    let yg = sigmoid(grid)
    var worst = 0.0
    for (x, v) in zip(grid, yg) {
        let reference = 1 / (1 + exp(-Double(x)))
        worst = max(worst, abs(Double(v) - reference) / reference)
    }
    #expect(worst < 1e-6, "sigmoid worst relative error \(worst)")
    #expect(sigmoid([.nan])[0].isNaN)
}
