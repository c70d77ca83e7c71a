import Foundation
import HDF5Kit
import Kernels
import MancsModel
import MancsTraining
import Testing
import TestSupport

// Twenty training steps replayed against the PyTorch reference
// (Tests/fixtures/trajectory.h5, written by Tests/fixtures/make_trajectory.py
// from shared/reference/mancs_ref.py in float64): the same recorded batches and
// negatives through TrainStep, clipping and Adam must end where the reference
// ends: parameters, BatchNorm running statistics and Adam's two moments.

@Suite struct TrajectoryTests {
    static var fixture: URL { SharedFiles.packageRoot.appendingPathComponent("Tests/fixtures/trajectory.h5") }

    static func l2(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    /// Errors of one group of tensors: relative L2 over all of them together
    /// (what the acceptance bound is on), and the worst single tensor.
    struct GroupError: CustomStringConvertible {
        var diff2 = 0.0, ref2 = 0.0
        var worst = (value: 0.0, name: "")
        var total: Double { ref2 == 0 ? diff2.squareRoot() : (diff2 / ref2).squareRoot() }
        mutating func add(_ name: String, _ mine: [Float], _ ref: [Float]) {
            let d = Self.sq(zip(mine, ref).map { $0 - $1 }), r = Self.sq(ref)
            diff2 += d; ref2 += r
            let e = r == 0 ? d.squareRoot() : (d / r).squareRoot()
            if !(e <= worst.value) { worst = (e, name) }
        }
        static func sq(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) } }
        var description: String { String(format: "%.2e (worst tensor %.2e, %@)", total, worst.value, worst.name) }
    }

    @Test func twentyStepsEndWhereTheReferenceEnds() throws {
        let file = try HDF5File(openForReading: Self.fixture.path)
        let root = file.root
        let settings = try ReferenceSettings(from: try root.group("config"))
        let steps = Int(try #require(try root.group("config").attribute("steps", as: Int64.self).first))
        let cfg = settings.model, n = settings.P * settings.K
        let network = try MancsNetwork(config: cfg, maxBatch: n)
        try network.parameters.load(from: try root.group("model"))
        try network.buffers.load(from: try root.group("buffers"))

        // The recorded batches: pool images (NCHW in the file) by index.
        let (pool, poolShape) = try root.read("/pool/images", as: Float.self)
        let imageSize = cfg.height * cfg.width * 3
        #expect(poolShape.count == 4 && poolShape[1...] == [3, cfg.height, cfg.width])
        var poolNHWC = [Float](repeating: 0, count: pool.count)
        pool.withUnsafeBufferPointer { src in
            poolNHWC.withUnsafeMutableBufferPointer { dst in
                nchwToNHWC(batch: poolShape[0], channels: 3, height: cfg.height, width: cfg.width, src.baseAddress!, dst.baseAddress!)
            }
        }
        let indices = try root.read("/steps/indices", as: Int64.self).values.map { Int($0) }
        let labels = try root.read("/steps/labels", as: Int64.self).values.map { Int($0) }
        let negatives = try root.read("/steps/negatives", as: Int64.self).values.map { Int($0) }
        let refLosses = try root.read("/steps/loss_total", as: Float.self).values
        let pairs = n * (settings.K - 1)
        #expect(indices.count == steps * n && labels.count == steps * n && negatives.count == steps * pairs)

        let step = TrainStep(network: network, losses: settings.losses)
        let adam = Adam(count: network.parameters.count, lr: settings.lr, beta1: settings.beta1, beta2: settings.beta2,
                        eps: settings.adamEps)
        let grads = network.parameters.grads!
        var rng = SplitMix64(seed: 0)  // unused: the negatives are the reference's
        var batch = [Float](repeating: 0, count: n * imageSize)
        for s in 0..<steps {
            for slot in 0..<n {
                let i = indices[s * n + slot]
                batch.replaceSubrange((slot * imageSize)..<((slot + 1) * imageSize),
                                      with: poolNHWC[(i * imageSize)..<((i + 1) * imageSize)])
            }
            let result = batch.withUnsafeBufferPointer {
                step.run(images: $0.baseAddress!, labels: Array(labels[(s * n)..<((s + 1) * n)]),
                         sampling: .fixed(Array(negatives[(s * pairs)..<((s + 1) * pairs)])), rng: &rng)
            }
            #expect(abs(Double(result.total - refLosses[s])) < 1e-3 * Double(abs(refLosses[s])),
                    "step \(s + 1): loss \(result.total), reference \(refLosses[s])")
            clipGradientNorm(grads, maxNorm: settings.clipNorm)
            adam.update(parameters: network.parameters.values, gradients: UnsafeBufferPointer(grads))
        }

        var params = GroupError(), buffers = GroupError()
        for t in network.parameters.tensors {
            params.add(t.name, network.parameters.export(t), try root.read("/final/model/\(t.name)", as: Float.self).values)
        }
        for t in network.buffers.tensors {
            buffers.add(t.name, network.buffers.export(t), try root.read("/final/buffers/\(t.name)", as: Float.self).values)
        }
        // Adam's moments share the parameter store's layout: export them through the gradient buffer.
        func momentError(_ moments: UnsafeMutableBufferPointer<Float>, _ group: String) throws -> GroupError {
            _ = grads.update(fromContentsOf: moments)
            var e = GroupError()
            for t in network.parameters.tensors {
                e.add(t.name, network.parameters.export(t, gradient: true),
                      try root.read("/final/\(group)/\(t.name)", as: Float.self).values)
            }
            return e
        }
        let m = try momentError(adam.m, "adam_m"), v = try momentError(adam.v, "adam_v")
        #expect(params.total < 1e-3, "parameters after \(steps) steps: \(params)")
        #expect(buffers.total < 1e-3, "BatchNorm running statistics: \(buffers)")
        #expect(m.total < 1e-3, "Adam exp_avg: \(m)")
        #expect(v.total < 1e-3, "Adam exp_avg_sq: \(v)")
        print("trajectory after \(steps) steps: parameters \(params); buffers \(buffers); exp_avg \(m); exp_avg_sq \(v)")
    }
}
