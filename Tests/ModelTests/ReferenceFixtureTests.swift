import Foundation
import MancsModel
import MancsTraining
import Testing
import TestSupport

/// The same comparison `mancs check-reference` runs, on every shared fixture.
@Suite struct ReferenceFixtureTests {
    /// With the command's default tolerances. The gradient tolerance adapts to
    /// the input's measured float32 sensitivity (see `ReferenceCheckResult.gradientTolerance`):
    /// mancs-tiny holds a ReLU input 2e-6 (relative) from zero in layer3.3.bn1,
    /// which float32 flips by chance; mancs-small-ls1 is well conditioned and
    /// must meet the strict 2e-2.
    @Test func everyFixtureMatchesThePyTorchStep() throws {
        let fixtures = SharedFiles.fixtures
        #expect(!fixtures.isEmpty, "no fixtures found (set MANCS_SHARED)")
        for url in fixtures {
            let tol = ReferenceTolerances()
            let r = try ReferenceCheck.run(path: url.path, tolerances: tol)
            let name = url.lastPathComponent
            #expect(r.worstOutput.value <= tol.outputs, "\(name): output \(r.worstOutput.name) \(r.worstOutput.value)")
            #expect(r.worstLoss.value <= tol.losses, "\(name): loss \(r.worstLoss.name) \(r.worstLoss.value)")
            #expect(r.worstGradient.value <= r.gradientTolerance, "\(name): gradient \(r.worstGradient.name) \(r.worstGradient.value)")
            #expect(r.gradientTolerance <= tol.conditionedCeiling)
            if r.float32Sensitivity.value < tol.gradients / 2 {
                #expect(r.gradientTolerance == tol.gradients, "\(name): a well-conditioned fixture keeps the strict tolerance")
            }
            #expect(r.worstStep1Parameter.value <= tol.step1Parameters,
                    "\(name): step-1 parameter \(r.worstStep1Parameter.name) \(r.worstStep1Parameter.value)")
            #expect(r.worstStep1Buffer.value <= tol.step1Buffers,
                    "\(name): step-1 buffer \(r.worstStep1Buffer.name) \(r.worstStep1Buffer.value)")
            #expect(r.passed)
            // Every parameter compared, every FAB mask compared.
            #expect(r.gradients.count > 50)
            #expect(r.outputs.filter { $0.name.hasPrefix("masks/") }.count >= 2)
            // The JSON carries the verdict.
            let json = try JSONSerialization.jsonObject(with: Data(r.json.utf8)) as? [String: Any]
            #expect(json?["pass"] as? Bool == true)
        }
    }

    @Test func missingAndMalformedFilesThrowReadableErrors() throws {
        let dir = SharedFiles.temporaryDirectory()
        #expect { try ReferenceCheck.run(path: dir.appendingPathComponent("absent.h5").path) } throws: { error in
            "\(error)".contains("absent.h5")
        }
        let junk = dir.appendingPathComponent("junk.h5")
        try Data("not an HDF5 file\n".utf8).write(to: junk)
        #expect { try ReferenceCheck.run(path: junk.path) } throws: { error in "\(error)".contains("junk.h5") }
    }

    @Test func trainStepReportsTheWeightedTotal() throws {
        let net = try MancsNetwork(config: tinyConfig(), maxBatch: 6, seed: 1)
        var losses = LossSettings()
        losses.lambdaAtt = 0.5
        let step = TrainStep(network: net, losses: losses)
        let images = randomImages(net.config, batch: 6, seed: 3)
        var rng = SplitMix64(seed: 1)
        let b = images.withUnsafeBufferPointer {
            step.run(images: $0.baseAddress!, labels: [0, 0, 1, 1, 2, 2], sampling: .hardest, rng: &rng)
        }
        #expect(abs(b.total - (b.rank + b.cls + 0.5 * b.att)) <= 1e-5 * b.total)
        #expect(b.pairs.count == 6 && b.negatives.count == 6)
        #expect(b.rank > 0 && b.cls > 0 && b.att > 0)
        #expect(net.parameters.grads!.contains { $0 != 0 })
    }
}
