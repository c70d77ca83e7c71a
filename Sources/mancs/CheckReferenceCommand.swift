import ArgumentParser
import Foundation
import Kernels
import MancsTraining

struct CheckReferenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-reference",
        abstract: "Compare the model, losses and optimiser against a PyTorch reference dump.",
        discussion: """
            Runs one training step of the fixture's configuration on its batch and prints one JSON \
            object with the worst errors. Exit 0 when everything is within tolerance, 1 when not, \
            2 when the file is missing or malformed.

            Float32 cannot follow a float64 reference through a ReLU whose input lies within \
            rounding of zero: such an input flips one unit and moves many gradients by a few \
            percent, in PyTorch's float32 as in ours. The check therefore also reruns the step on \
            images moved by a relative 1e-6 (the size of float32's own error inside a deep \
            network) and reports how far the gradients move \
            (float32_sensitivity); the gradient tolerance becomes twice that when it is larger \
            than --grad-tolerance, never more than 5e-2. --strict keeps --grad-tolerance as given.
            """)

    @Argument(help: "A fixture written by shared/reference/make_fixtures.py (HDF5).")
    var file: String

    @Option(help: "Tolerance on each gradient's relative L2 error.")
    var gradTolerance: Double = 2e-2

    @Flag(help: "Use --grad-tolerance as given, without adapting it to the input's float32 sensitivity.")
    var strict = false

    @Flag(help: "Also list every gradient tensor's error on stderr.")
    var verbose = false

    @OptionGroup var compute: ThreadsOption

    func validate() throws {
        try FlagCheck.real("grad-tolerance", gradTolerance, positive: true, max: 1)
    }

    func run() throws {
        setComputeThreads(compute.resolved)
        var tolerances = ReferenceTolerances()
        tolerances.gradients = gradTolerance
        tolerances.adaptToConditioning = !strict
        let result: ReferenceCheckResult
        do {
            result = try ReferenceCheck.run(path: file, tolerances: tolerances)
        } catch {
            let line = String(describing: error).split(separator: "\n").joined(separator: " ")
            FileHandle.standardError.write(Data("mancs check-reference: \(line)\n".utf8))
            throw ExitCode(2)
        }
        if verbose {
            for g in result.gradients {
                FileHandle.standardError.write(Data("\(g.name) \(g.error)\n".utf8))
            }
        }
        print(result.json)
        if !result.passed { throw ExitCode(1) }
    }
}
