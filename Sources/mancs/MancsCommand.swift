import ArgumentParser
import MancsModel

@main
struct Mancs: ParsableCommand {
    /// Parses the arguments after rewriting deprecated spellings (DeprecatedSpellings).
    static func main() {
        main(DeprecatedSpellings.rewrite(Array(CommandLine.arguments.dropFirst())))
    }

    static let configuration = CommandConfiguration(
        commandName: "mancs",
        abstract: "Tools for the Mancs person re-identification trainer.",
        discussion: "Training itself is `mancs-dist` (run under mpirun); these are the tools around it.",
        version: mancsVersion,
        subcommands: [
            CheckReferenceCommand.self, SynthCommand.self, DataCommand.self,
            EvalCommand.self, InspectCommand.self, DiffCommand.self, MPICheckCommand.self, BenchCommand.self,
            ExtractCommand.self, VisualizeCommand.self, PlotCommand.self,
        ])
}
