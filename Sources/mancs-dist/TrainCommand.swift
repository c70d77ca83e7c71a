import ArgumentParser
import MancsModel
import ReIDData
import Foundation
import Kernels
import Yams

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
        (--resume auto). SIGTERM or SIGUSR1 on any rank checkpoints and exits cleanly.

        Settings can also come from --config FILE.yaml, whose keys are the flag names \
        (e.g. `ids-per-batch: 16`); flags given on the command line win.
        """,
        version: mancsVersion)

    @Option(help: "YAML file of settings (keys are the flag names); flags override it.")
    var config: String?

    @OptionGroup(title: "Data") var dataOptions: DataOptions
    @OptionGroup(title: "Schedule") var scheduleOptions: ScheduleOptions
    @OptionGroup(title: "Model") var modelOptions: ModelOptions
    @OptionGroup(title: "Optimisation and losses") var lossOptions: LossOptions
    @OptionGroup(title: "Run control") var runOptions: RunOptions
    @OptionGroup(title: "Learning-rate schedule and weight decay") var scheduleRateOptions: LearningRateOptions
    @OptionGroup(title: "Evaluation") var evaluationOptions: EvaluationOptions

    @Flag(help: "Print the effective settings as YAML and exit.")
    var printConfig = false

    /// Test hook: rank 0 writes the averaged gradient of the first step taken
    /// (before clipping) to this HDF5 file, as /grads/<name>.
    @Option(help: .hidden) var dumpGradients: String?

    /// Settles the BLAS kernels before anything else (this may restart the process
    /// with better ones, before MPI_Init: see `BLASKernelSelection`).
    static func main() {
        BLASKernelSelection.configureAtStartup()
        main(nil)
    }

    /// Defaults <- config file <- flags.
    func settings() throws -> TrainSettings {
        var s = TrainSettings()
        if let path = config {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw SettingsError("--config \(path): cannot read the file")
            }
            do {
                s = try YAMLDecoder().decode(TrainSettings.self, from: text)
            } catch let e as SettingsError {
                throw SettingsError("--config \(path): \(e.description)")
            } catch {
                throw SettingsError("--config \(path): not valid settings YAML (\(error))")
            }
        }
        dataOptions.apply(to: &s); scheduleOptions.apply(to: &s); modelOptions.apply(to: &s)
        lossOptions.apply(to: &s); runOptions.apply(to: &s); evaluationOptions.apply(to: &s)
        scheduleRateOptions.apply(to: &s)
        return s
    }

    mutating func run() throws {
        let s: TrainSettings
        do {
            s = try settings()
            if printConfig { print(try YAMLEncoder().encode(s), terminator: ""); return }
            try s.validate()
        } catch let e as SettingsError {
            // Every rank parses the same flags; only rank 0 (or a world of one) speaks.
            if ProcessEnvironment.isRankZero { FileHandle.standardError.write(Data("mancs-dist: \(e.description)\n".utf8)) }
            throw ExitCode(2)
        }
        let code = Trainer.run(settings: s, dumpGradients: dumpGradients)
        if code != 0 { throw ExitCode(code) }
    }
}

/// What can be known about the MPI launch before MPI_Init (from mpirun's environment).
enum ProcessEnvironment {
    static var isRankZero: Bool {
        let env = ProcessInfo.processInfo.environment
        let rank = env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? env["PMI_RANK"] ?? env["SLURM_PROCID"] ?? "0"
        return rank == "0"
    }
}

struct DataOptions: ParsableArguments {
    @Option(help: "Dataset root folder (e.g. Market-1501-v15.09.15, or the output of `mancs synth`; --dataset list: the list file, or the folder holding list.txt).")
    var data: String?
    @Option(help: "\(DatasetName.allCases.map(\.rawValue).joined(separator: " | ")) (default market1501).")
    var dataset: String?
    @Option(help: "Run directory: checkpoints/, metrics.jsonl, config.yaml (default runs/mancs).")
    var runDir: String?

    func apply(to s: inout TrainSettings) {
        if let v = data { s.data = v }; if let v = dataset { s.dataset = v }; if let v = runDir { s.runDir = v }
    }
}

struct ScheduleOptions: ParsableArguments {
    @Option(help: "Epochs (one epoch = one pass over the training identities; default 160).")
    var epochs: Int?
    @Option(help: "Stop when the global step reaches N (counted from the start of the run, across resumes).")
    var maxSteps: Int?
    @Option(name: .customLong("ids-per-batch"), help: "P: identities per global batch (default 16); must divide by ranks x accumulate.")
    var idsPerBatch: Int?
    @Option(name: .customLong("images-per-id"), help: "K: images per identity (default 4).")
    var imagesPerId: Int?
    @Option(help: "Micro-batches per step (default 1): each rank's share of the batch is split into A; a micro-batch (1/A of the global batch, over every rank) is the unit of triplet mining and BatchNorm statistics, as in PyTorch DDP + SyncBatchNorm.")
    var accumulate: Int?
    @Option(name: .customLong("triplet-mining"), help: "global: every rank mines triplets over the whole (micro-)batch of all ranks, so the rank count does not change the loss | local: over its own shard only, which needs at least 2 identities per shard (default global).")
    var tripletMining: String?
    @Option(name: .customLong("batch-norm"), help: "sync: training BatchNorm normalises with the statistics of the whole (micro-)batch of all ranks (two small allreduces per layer and step) | local: with each rank's own shard's (default sync).")
    var batchNorm: String?

    func apply(to s: inout TrainSettings) {
        if let v = epochs { s.epochs = v }; if let v = maxSteps { s.maxSteps = v }
        if let v = idsPerBatch { s.idsPerBatch = v }; if let v = imagesPerId { s.imagesPerId = v }
        if let v = accumulate { s.accumulate = v }
        if let v = tripletMining { s.tripletMining = v }; if let v = batchNorm { s.batchNorm = v }
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "Input height (default 256).") var height: Int?
    @Option(help: "Input width (default 128).") var width: Int?
    @Option(help: "Base width w of the ResNet (default 64 = ResNet-50).") var baseWidth: Int?
    @Option(help: "Bottleneck blocks per stage (default 3,4,6,3).", transform: parseInts) var blocks: [Int]?
    @Option(help: "Stride of stage 4 (1 or 2; default 2).") var lastStride: Int?
    @Option(help: "Stages followed by a fully attentional block (default 2,3,4).", transform: parseInts) var attentionStages: [Int]?
    @Option(help: "Initial weights: a safetensors file with torchvision/timm names (ImageNet) or from mancs export, or a Mancs checkpoint.")
    var pretrained: String?
    @Option(name: .customLong("init"), help: "Initialisation of the layers --pretrained does not cover: pytorch (PyTorch's defaults: conv and linear weights and biases uniform(+-1/sqrt(fan_in))) | torchvision (convs kaiming-normal fan_out, zero conv bias). Default pytorch; see docs/training.md.")
    var initialization: String?

    func apply(to s: inout TrainSettings) {
        if let v = height { s.height = v }; if let v = width { s.width = v }; if let v = baseWidth { s.baseWidth = v }
        if let v = blocks { s.blocks = v }; if let v = lastStride { s.lastStride = v }
        if let v = attentionStages { s.attentionStages = v }; if let v = pretrained { s.pretrained = v }
        if let v = initialization { s.initialization = v }
    }
}

struct LossOptions: ParsableArguments {
    @Option(help: "Adam learning rate (default 3e-4).") var lr: Double?
    @Option(help: "Global gradient-norm clip (default 5).") var clipNorm: Double?
    @Option(help: "Triplet margin (default 0.5).") var margin: Double?
    @Option(help: "Focal loss gamma (default 2).") var gamma: Double?
    @Option(help: "Weight of the triplet loss (default 1).") var lambdaRank: Double?
    @Option(help: "Weight of the focal loss (default 1).") var lambdaCls: Double?
    @Option(help: "Weight of the attention loss (default 0.2).") var lambdaAtt: Double?
    @Option(help: "Negative sampling: curriculum | hardest | random (default curriculum).") var negatives: String?
    @Option(help: "Curriculum: epoch at which mu reaches 0 (default 30).") var t0: Double?
    @Option(help: "Curriculum: epoch at which sigma reaches a*b (default 60).") var t1: Double?
    @Option(name: .customLong("curriculum-a"), help: "Curriculum: initial sigma (default 15).") var curriculumA: Double?
    @Option(name: .customLong("curriculum-b"), help: "Curriculum: sigma decay factor (default 0.001).") var curriculumB: Double?

    func apply(to s: inout TrainSettings) {
        if let v = lr { s.lr = v }; if let v = clipNorm { s.clipNorm = v }; if let v = margin { s.margin = v }
        if let v = gamma { s.gamma = v }; if let v = lambdaRank { s.lambdaRank = v }
        if let v = lambdaCls { s.lambdaCls = v }; if let v = lambdaAtt { s.lambdaAtt = v }
        if let v = negatives { s.negatives = v }; if let v = t0 { s.t0 = v }; if let v = t1 { s.t1 = v }
        if let v = curriculumA { s.curriculumA = v }; if let v = curriculumB { s.curriculumB = v }
    }
}

struct RunOptions: ParsableArguments {
    @Option(help: "Random seed: model init, batches, augmentation, sampling (default 0).") var seed: Int?
    @Option(help: "Compute threads per rank: GEMMs and layers are split over them (default 0 = this rank's share of the node: the cores it may run on, at most cores / ranks on the node). Several per rank under mpirun need --bind-to none or --map-by slot:PE=N.") var threads: Int?
    @Option(help: "Image decoding threads per rank (default 2).") var loaderThreads: Int?
    @Option(help: "Write a checkpoint every N steps (default 500; always at the end).") var checkpointEvery: Int?
    @Option(help: "Checkpoints to keep (default 3).") var keepCheckpoints: Int?
    @Option(help: "auto (newest valid checkpoint in RUN_DIR/checkpoints) | PATH | none (default auto).") var resume: String?
    @Flag(help: "Resume although settings that may change mid-run differ from the checkpoint's: --lr, --epochs, --triplet-mining, --batch-norm (the rest of the run's contract never may).") var resumeForce = false
    @Option(help: "Evaluate on query/gallery every N epochs (0 = only at the end; default 0).") var evalEvery: Int?
    @Option(help: "Also evaluate every N steps (0 = off; default 0): --eval-every in steps.") var evalEverySteps: Int?
    @Option(help: "Also write a checkpoint at the end of every N epochs (0 = off; default 0): --checkpoint-every in epochs.") var checkpointEveryEpochs: Int?
    @Option(help: "Log every N steps (default 10).") var logEvery: Int?
    @Option(help: "Compare parameter checksums across ranks every N steps (default 100).") var checkReplicasEvery: Int?

    func apply(to s: inout TrainSettings) {
        if let v = seed { s.seed = v }; if let v = threads { s.threads = v }; if let v = loaderThreads { s.loaderThreads = v }
        if let v = checkpointEvery { s.checkpointEvery = v }; if let v = keepCheckpoints { s.keepCheckpoints = v }
        if let v = resume { s.resume = v }; if let v = evalEvery { s.evalEvery = v }; if let v = logEvery { s.logEvery = v }
        if let v = checkReplicasEvery { s.checkReplicasEvery = v }
        if resumeForce { s.resumeForce = true }
        if let v = evalEverySteps { s.evalEverySteps = v }; if let v = checkpointEveryEpochs { s.checkpointEveryEpochs = v }
    }
}

func parseInts(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count else {
        throw ValidationError("expected comma-separated integers such as 3,4,6,3, got '\(text)'")
    }
    return values
}
