import Foundation
import Testing
import HDF5Kit
import MancsTraining
import TestSupport

// Adam and clipping: the fixtures' own gradients, clipped and stepped, give
// their /step1/model; plus closed-form properties of the step.

@Suite struct OptimizerTests {
    @Test func clippedAdamStepMatchesFixtures() throws {
        let fixtures = SharedFiles.fixtures
        #expect(!fixtures.isEmpty, "no fixtures under shared/fixtures (set MANCS_SHARED)")
        for url in fixtures {
            let root = try HDF5File(openForReading: url.path).root
            let name = url.lastPathComponent
            let config = try root.group("config")
            func setting(_ key: String) throws -> Double { try config.attribute(key, as: Double.self)[0] }

            // One flat buffer in file order: Adam is elementwise, clipping global.
            let names = try root.group("model").members()
            var params: [Float] = [], grads: [Float] = [], expected: [Float] = []
            var slices: [(name: String, range: Range<Int>)] = []
            for tensor in names {
                let p = try root.read("model/\(tensor)", as: Float.self).values
                slices.append((tensor, params.count..<(params.count + p.count)))
                params += p
                grads += try root.read("grads/\(tensor)", as: Float.self).values
                expected += try root.read("step1/model/\(tensor)", as: Float.self).values
            }
            try #require(grads.count == params.count && expected.count == params.count, "\(name): tensor sizes")

            let clipNorm = Float(try setting("clip_norm"))
            let norm = grads.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: clipNorm) }
            let reference = try root.group("grads").attribute("global_norm_before_clip", as: Double.self)[0]
            #expect(relativeError(Double(norm), reference) < 1e-5, "\(name): norm \(norm) vs \(reference)")

            let adam = Adam(count: params.count, lr: Float(try setting("lr")), beta1: Float(try setting("beta1")),
                            beta2: Float(try setting("beta2")), eps: Float(try setting("adam_eps")))
            let start = params
            params.withUnsafeMutableBufferPointer { p in
                grads.withUnsafeBufferPointer { adam.update(parameters: p, gradients: $0) }
            }
            #expect(adam.step == 1)

            // Per tensor: the error is within 1e-4 of the update's size, plus the
            // float32 rounding of the stored parameters (one ulp each side).
            var worstRelativeToUpdate = 0.0
            for slice in slices {
                var maxError: Float = 0, maxUpdate: Float = 0, maxParameter: Float = 0
                for i in slice.range {
                    maxError = max(maxError, abs(params[i] - expected[i]))
                    maxUpdate = max(maxUpdate, abs(expected[i] - start[i]))
                    maxParameter = max(maxParameter, abs(expected[i]))
                }
                let bound = 1e-4 * maxUpdate + 2 * maxParameter.ulp
                #expect(maxError <= bound, "\(name) \(slice.name): max error \(maxError), update \(maxUpdate)")
                if maxUpdate > 0 { worstRelativeToUpdate = max(worstRelativeToUpdate, Double(maxError / maxUpdate)) }
            }
            // Not vacuous: the step moved the parameters by about lr.
            #expect(worstRelativeToUpdate < 1e-3, "\(name): worst error / update \(worstRelativeToUpdate)")
        }
    }

    @Test func constantGradientsStepByLearningRate() {
        // With a constant gradient the bias-corrected moments are exactly g and
        // g^2, so every step moves each parameter by lr * g / (|g| + eps).
        let adam = Adam(count: 4, lr: 1e-2)
        var params: [Float] = [1, -2, 0.5, 3]
        let grads: [Float] = [0.3, -4, 1e-9, 0]
        for step in 1...3 {
            params.withUnsafeMutableBufferPointer { p in
                grads.withUnsafeBufferPointer { adam.update(parameters: p, gradients: $0) }
            }
            let expected: [Double] = [1 - 1e-2 * Double(step), -2 + 1e-2 * Double(step),
                                      0.5 - 1e-2 * Double(step) * 1e-9 / (1e-9 + 1e-8), 3]
            for (got, want) in zip(params, expected) {
                #expect(abs(Double(got) - want) < 1e-6, "step \(step): \(params) vs \(expected)")
            }
        }
        #expect(adam.step == 3)
        #expect(adam.m[3] == 0 && adam.v[3] == 0)
    }

    @Test func weightDecayIsAddedToTheGradient() {
        // torch Adam's L2 penalty: the first step follows the sign of g + wd * p.
        let adam = Adam(count: 2, lr: 0.1, weightDecay: 0.5)
        var params: [Float] = [2, 2]
        let grads: [Float] = [-0.5, -2]  // g + wd p = 0.5 and -1
        params.withUnsafeMutableBufferPointer { p in
            grads.withUnsafeBufferPointer { adam.update(parameters: p, gradients: $0) }
        }
        #expect(abs(params[0] - 1.9) < 1e-6 && abs(params[1] - 2.1) < 1e-6, "\(params)")
    }

    @Test func fullVectorsMatchShortOnesBitForBit() {
        // 37 parameters run as four full eight-lane vectors and a short one of 5;
        // one-parameter optimisers as one-lane vectors. Three steps with weight decay:
        // every bit of p, m and v agrees.
        let count = 37
        var rng = SplitMix64(seed: 11)
        let start = rng.array(count, scale: 2)
        let steps = (0..<3).map { _ in rng.array(count) }
        let together = Adam(count: count, lr: 1e-2, weightDecay: 0.01)
        var params = start
        for g in steps {
            params.withUnsafeMutableBufferPointer { p in g.withUnsafeBufferPointer { together.update(parameters: p, gradients: $0) } }
        }
        for i in 0..<count {
            let alone = Adam(count: 1, lr: 1e-2, weightDecay: 0.01)
            var p = [start[i]]
            for g in steps {
                p.withUnsafeMutableBufferPointer { p in [g[i]].withUnsafeBufferPointer { alone.update(parameters: p, gradients: $0) } }
            }
            #expect(p[0].bitPattern == params[i].bitPattern && alone.m[0].bitPattern == together.m[i].bitPattern
                    && alone.v[0].bitPattern == together.v[i].bitPattern, "parameter \(i): \(p[0]) vs \(params[i])")
        }
        #expect(params != start)
    }

    @Test func clippingFollowsTorchSemantics() {
        var small: [Float] = [0.3, -0.4]  // norm 0.5
        let before = small
        let n1 = small.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: 5) }
        #expect(abs(n1 - 0.5) < 1e-7 && small == before, "below maxNorm nothing changes")

        var large: [Float] = [30, -40]  // norm 50
        let n2 = large.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: 5) }
        #expect(n2 == 50)
        let scale = 5 / (50 + 1e-6)
        #expect(abs(Double(large[0]) - 30 * scale) < 1e-5 && abs(Double(large[1]) + 40 * scale) < 1e-5)

        var empty: [Float] = []
        #expect(empty.withUnsafeMutableBufferPointer { clipGradientNorm($0, maxNorm: 1) } == 0)
    }
}
