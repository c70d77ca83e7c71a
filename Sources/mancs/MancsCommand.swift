import ArgumentParser
import Checkpoint
import Foundation
import HDF5Kit
import Kernels
import MancsModel
import ReIDEval

@main
struct Mancs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mancs",
        abstract: "Tools for the Mancs person re-identification trainer.",
        discussion: """
        Training itself is `mancs-dist` (run under mpirun); these are the tools around it. \
        HDF5 files given to inspect, eval, diff and extract are read first in a child process: \
        a file that crashes libhdf5 is refused with one error; MANCS_PROBE_FILES=0 turns that off.
        """,
        version: mancsVersion,
        subcommands: [
            CheckReferenceCommand.self, SynthCommand.self, DataCommand.self,
            EvalCommand.self, InspectCommand.self, DiffCommand.self, MPICheckCommand.self, BenchCommand.self,
            ExtractCommand.self, ExportCommand.self, VisualizeCommand.self, PlotCommand.self,
        ])

    /// In a probe child (`FileProbe`), reads one file and exits. Otherwise settles the BLAS kernels first (this may restart the process with better
    /// ones: see `BLASKernelSelection`), then parses the arguments after rewriting
    /// deprecated spellings (DeprecatedSpellings) and runs the subcommand.
    static func main() {
        FileProbe.runIfRequested(readers: [
            "checkpoint": { _ = try Checkpoint.verify(URL(fileURLWithPath: $0)) },  // inspect, --checkpoint, --resume
            "features": { _ = try FeaturesFile.read($0) },  // eval --features
            "hdf5": { path in  // diff: every dataset
                let file = try HDF5File(openForReading: path)
                defer { file.close() }
                try file.root.walkDatasets { group, name in _ = try group.read(name, as: Double.self) }
            },
        ])
        BLASKernelSelection.configureAtStartup()
        main(DeprecatedSpellings.rewrite(Array(CommandLine.arguments.dropFirst())))
    }
}
