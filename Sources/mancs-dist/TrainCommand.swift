import ArgumentParser
import Checkpoint
import Distributed
import HDF5Kit
import MancsModel
import Foundation
import Kernels
import MancsSettings

/// `mancs-dist`: data-parallel Mancs training. Every flag is optional on the
/// parser so that "not given" can be told apart from "given the default":
/// the precedence is flag > --config file > built-in default.
@main
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mancs-dist",
        abstract: "Train Mancs (person re-identification) data-parallel over MPI.",
        discussion: """
        Run under MPI, one process per rank:

          mpirun -np 8 mancs-dist --data /data/Market-1501 --run-dir runs/market

        Every rank trains on its share of each P x K batch (P must divide by the number of ranks); \
        triplets are mined and BatchNorm statistics taken over the whole batch of every rank, so \
        the rank count changes the speed, not the training (--triplet-mining, --batch-norm). \
        Gradients are averaged; rank 0 writes checkpoints to RUN_DIR/checkpoints and appends metrics to \
        RUN_DIR/metrics.jsonl. Rerunning the same command resumes from the newest valid checkpoint \
        (--resume auto). SIGTERM or SIGUSR1 on any rank checkpoints and exits cleanly. \
        A checkpoint this run did not write is read first in a child process: one that crashes \
        libhdf5 is refused (--resume auto skips it); MANCS_PROBE_FILES=0 turns that off.

        Settings can also come from --config FILE.yaml, whose keys are the flag names \
        (e.g. `ids-per-batch: 16`); flags given on the command line win.
        """,
        version: mancsVersion)

    @Option(help: "YAML file of settings (keys are the flag names); flags override it.")
    var config: String?

    @OptionGroup var flags: TrainFlags

    @Flag(help: "Print the effective settings as YAML and exit.")
    var printConfig = false

    /// Test hook: rank 0 writes the averaged gradient of the first step taken
    /// (before clipping) to this HDF5 file, as /grads/<name>.
    @Option(help: .hidden) var dumpGradients: String?

    /// Settles the BLAS kernels before anything else (this may restart the process
    /// with better ones, before MPI_Init: see `BLASKernelSelection`).
    static func main() {
        // A probe child (`FileProbe`: rank 0 reads a checkpoint it did not write in a child first) reads and exits here.
        FileProbe.runIfRequested(readers: ["checkpoint": { _ = try Checkpoint.verify(URL(fileURLWithPath: $0)) }])
        BLASKernelSelection.configureAtStartup()
        main(nil)
    }

    /// Defaults <- config file <- flags.
    func settings() throws -> TrainSettings {
        var settings = try config.map(TrainSettings.init(contentsOfConfig:)) ?? TrainSettings()
        try flags.apply(to: &settings)
        return settings
    }

    mutating func run() throws {
        let settings: TrainSettings
        do {
            settings = try self.settings()
            if printConfig { print(try settings.yaml(), terminator: ""); return }
            try settings.validate()
        } catch let e as SettingsError {
            // Every rank parses the same flags; only rank 0 (or a world of one) speaks.
            if MPILaunch.isRankZero { FileHandle.standardError.write(Data("mancs-dist: \(e.description)\n".utf8)) }
            throw ExitCode(2)
        }
        let code = Trainer.run(settings: settings, dumpGradients: dumpGradients)
        if code != 0 { throw ExitCode(code) }
    }
}

