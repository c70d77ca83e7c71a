import Foundation
import Testing
import TestSupport
import Kernels

// Synchronised BatchNorm without MPI: a batch split into shards, each normalised
// through a reducer that sums the shards' contributions, must give the one-process
// outputs, running statistics and gradients. The shards run one after the other:
// a first pass records each shard's contribution, a second sums them.

/// Records what each call passes (this shard's contribution) and leaves it unchanged.
final class Recorder: BatchNormStatisticsReducer {
    var calls: [[Double]] = []
    func sumOverReplicas(_ values: UnsafeMutableBufferPointer<Double>) { calls.append(Array(values)) }
}

/// Replaces the values by the sum of every shard's recorded contribution to call 0.
final class Summer: BatchNormStatisticsReducer {
    let shards: [[Double]]
    init(_ shards: [[Double]]) { self.shards = shards }
    func sumOverReplicas(_ values: UnsafeMutableBufferPointer<Double>) {
        #expect(shards.allSatisfy { $0.count == values.count })
        for i in values.indices { values[i] = shards.reduce(0) { $0 + $1[i] } }
    }
}

private struct BNState {
    var y: [Float], mean: [Float], invStd: [Float], runningMean: [Float], runningVar: [Float]
    var gradX: [Float] = [], gradGamma: [Float] = [], gradBeta: [Float] = []
}

private func forward(_ x: [Float], rows: Int, channels: Int, gamma: [Float], beta: [Float], relu: Bool,
                     reducer: BatchNormStatisticsReducer?) -> BNState {
    var s = BNState(y: [Float](repeating: .nan, count: x.count), mean: [Float](repeating: 0, count: channels),
                    invStd: [Float](repeating: 0, count: channels), runningMean: [Float](repeating: 0.2, count: channels),
                    runningVar: [Float](repeating: 1.5, count: channels))
    let f = relu ? batchNormReLUForwardTraining : batchNormForwardTraining
    f(rows, channels, x, gamma, beta, &s.y, &s.mean, &s.invStd, &s.runningMean, &s.runningVar, 0.1, 1e-5, reducer)
    return s
}

private func backward(_ s: inout BNState, _ x: [Float], _ g: [Float], rows: Int, channels: Int, gamma: [Float], beta: [Float], relu: Bool,
                      reducer: BatchNormStatisticsReducer?) {
    s.gradX = [Float](repeating: .nan, count: x.count)
    s.gradGamma = [Float](repeating: 0, count: channels)
    s.gradBeta = [Float](repeating: 0, count: channels)
    if relu {
        batchNormReLUBackward(rows: rows, channels: channels, input: x, gamma: gamma, beta: beta, saveMean: s.mean,
                              saveInvStd: s.invStd, gradOutput: g, gradInput: &s.gradX, gradGamma: &s.gradGamma,
                              gradBeta: &s.gradBeta, reducer: reducer)
    } else {
        batchNormBackward(rows: rows, channels: channels, input: x, gamma: gamma, saveMean: s.mean, saveInvStd: s.invStd,
                          gradOutput: g, gradInput: &s.gradX, gradGamma: &s.gradGamma, gradBeta: &s.gradBeta,
                          reducer: reducer)
    }
}

private func close(_ a: [Float], _ b: [Float], _ tolerance: Float) -> Bool {
    zip(a, b).allSatisfy { abs($0 - $1) <= tolerance * max(1, abs($1)) }
}

@Test("Synchronised BatchNorm over shards = BatchNorm of the whole batch", arguments: [1, 2, 4], [false, true])
func synchronisedBatchNorm(shards: Int, relu: Bool) {
    let rows = 24, channels = 5, m = rows / shards
    var rng = SplitMix64(seed: 77)
    let x = rng.array(rows * channels, scale: 2).map { $0 + 3 }  // an offset mean, as conv outputs have
    let g = rng.array(rows * channels)
    let gamma = rng.array(channels).map { $0 + 1 }, beta = rng.array(channels)
    var whole = forward(x, rows: rows, channels: channels, gamma: gamma, beta: beta, relu: relu, reducer: nil)
    backward(&whole, x, g, rows: rows, channels: channels, gamma: gamma, beta: beta, relu: relu, reducer: nil)

    func shard(_ a: [Float], _ r: Int) -> [Float] { Array(a[(r * m * channels)..<((r + 1) * m * channels)]) }
    // Forward: contributions, then every shard with the sums.
    let forwardParts = (0..<shards).map { r -> [Double] in
        let rec = Recorder()
        _ = forward(shard(x, r), rows: m, channels: channels, gamma: gamma, beta: beta, relu: relu, reducer: rec)
        return rec.calls[0]
    }
    var states = (0..<shards).map {
        forward(shard(x, $0), rows: m, channels: channels, gamma: gamma, beta: beta, relu: relu, reducer: Summer(forwardParts))
    }
    // Backward: the same two passes.
    let backwardParts = (0..<shards).map { r -> [Double] in
        let rec = Recorder()
        var s = states[r]
        backward(&s, shard(x, r), shard(g, r), rows: m, channels: channels, gamma: gamma, beta: beta, relu: relu, reducer: rec)
        return rec.calls[0]
    }
    var gradGamma = [Float](repeating: 0, count: channels), gradBeta = gradGamma
    for r in 0..<shards {
        backward(&states[r], shard(x, r), shard(g, r), rows: m, channels: channels, gamma: gamma, beta: beta, relu: relu,
                 reducer: Summer(backwardParts))
        #expect(close(states[r].y, shard(whole.y, r), 1e-5), "output of shard \(r)")
        #expect(close(states[r].runningMean, whole.runningMean, 1e-6) && close(states[r].runningVar, whole.runningVar, 1e-6),
                "running statistics of shard \(r)")
        #expect(close(states[r].gradX, shard(whole.gradX, r), 1e-4), "input gradient of shard \(r)")
        for c in 0..<channels { gradGamma[c] += states[r].gradGamma[c]; gradBeta[c] += states[r].gradBeta[c] }
    }
    // gamma and beta: each shard its own part; the gradient allreduce adds them.
    #expect(close(gradGamma, whole.gradGamma, 1e-4) && close(gradBeta, whole.gradBeta, 1e-4), "gamma/beta gradients")
}

@Test("The rebuilt relu(BN(x)) of backward is the training forward's output, bit for bit")
func recomputeIsTheForward() {
    let rows = 40, channels = 7
    var rng = SplitMix64(seed: 78)
    let x = rng.array(rows * channels, scale: 3)
    let gamma = rng.array(channels), beta = rng.array(channels)
    let s = forward(x, rows: rows, channels: channels, gamma: gamma, beta: beta, relu: true, reducer: nil)
    var again = [Float](repeating: .nan, count: x.count)
    batchNormReLURecompute(rows: rows, channels: channels, input: x, gamma: gamma, beta: beta, saveMean: s.mean,
                           saveInvStd: s.invStd, output: &again)
    #expect(again == s.y)
}
