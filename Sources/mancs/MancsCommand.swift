import ArgumentParser
import Kernels
import MancsModel

@main
struct Mancs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mancs",
        abstract: "Tools for the Mancs person re-identification trainer.",
        discussion: "Training itself is `mancs-dist` (run under mpirun); these are the tools around it.",
        version: mancsVersion,
        subcommands: [
            CheckReferenceCommand.self, SynthCommand.self, DataCommand.self,
            EvalCommand.self, InspectCommand.self, DiffCommand.self, MPICheckCommand.self, BenchCommand.self,
            ExtractCommand.self, ExportCommand.self, VisualizeCommand.self, PlotCommand.self,
        ])

    /// Settles the BLAS kernels first (this may restart the process with better
    /// ones: see `BLASKernelSelection`), then parses the arguments after rewriting
    /// deprecated spellings (DeprecatedSpellings) and runs the subcommand.
    static func main() {
        BLASKernelSelection.configureAtStartup()
        main(DeprecatedSpellings.rewrite(Array(CommandLine.arguments.dropFirst())))
    }
}
