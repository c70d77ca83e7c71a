import ArgumentParser
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
            ExtractCommand.self, VisualizeCommand.self, PlotCommand.self,
        ])
}
