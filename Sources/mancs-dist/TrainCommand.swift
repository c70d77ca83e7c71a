import ArgumentParser
import Foundation
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

        Every rank trains on its share of each P x K batch (P must divide by the number of ranks). \
        Gradients are averaged; rank 0 writes checkpoints to RUN_DIR/checkpoints and appends metrics to \
        RUN_DIR/metrics.jsonl. Rerunning the same command resumes from the newest valid checkpoint \
        (--resume auto). SIGTERM or SIGUSR1 on any rank checkpoints and exits cleanly.

        Settings can also come from --config FILE.yaml, whose keys are the flag names \
        (e.g. `ids-per-batch: 16`); flags given on the command line win.
        """)

    @Option(help: "YAML file of settings (keys are the flag names); flags override it.")
    var config: String?

    @OptionGroup(title: "Data") var dataOptions: DataOptions
    @OptionGroup(title: "Schedule") var scheduleOptions: ScheduleOptions
    @OptionGroup(title: "Model") var modelOptions: ModelOptions
    @OptionGroup(title: "Optimisation and losses") var lossOptions: LossOptions
    @OptionGroup(title: "Run control") var runOptions: RunOptions

    @Flag(help: "Print the effective settings as YAML and exit.")
    var printConfig = false

    /// Test hook: rank 0 writes the averaged gradient of the first step taken
    /// (before clipping) to this HDF5 file, as /grads/<name>.
    @Option(help: .hidden) var dumpGradients: String?

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
        lossOptions.apply(to: &s); runOptions.apply(to: &s)
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

    /// Ranks on this node, from the launcher's environment (1 without one).
    static var ranksOnThisNode: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"] {
            if let v = env[key].flatMap({ Int($0) }), v > 0 { return v }
        }
        return 1
    }

    /// `--threads 0`: the cores this process may run on (its CPU affinity, e.g. one
    /// core under mpirun's default binding of 2 or fewer ranks), but at most the
    /// node's cores divided by the ranks on it, so ranks sharing a socket binding or
    /// no binding do not oversubscribe the node.
    static var defaultComputeThreads: Int {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let allowed = allowedCPUCount ?? online
        return max(1, min(allowed, online / ranksOnThisNode))
    }

    /// CPUs in this process's affinity mask (Linux: Cpus_allowed_list in /proc/self/status).
    static var allowedCPUCount: Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return nil }
        var count = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
            let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
            if bounds.count == 1 { count += 1 } else if bounds.count == 2, bounds[1] >= bounds[0] { count += bounds[1] - bounds[0] + 1 }
        }
        return count > 0 ? count : nil
    }
}

struct DataOptions: ParsableArguments {
    @Option(help: "Dataset root folder (e.g. Market-1501-v15.09.15, or the output of `mancs synth`).")
    var data: String?
    @Option(help: "market1501 | dukemtmc | cuhk03-labeled | cuhk03-detected (default market1501).")
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
    @Option(help: "Micro-batches per step: N ranks x A reproduce the global batch of N*A ranks (default 1).")
    var accumulate: Int?

    func apply(to s: inout TrainSettings) {
        if let v = epochs { s.epochs = v }; if let v = maxSteps { s.maxSteps = v }
        if let v = idsPerBatch { s.idsPerBatch = v }; if let v = imagesPerId { s.imagesPerId = v }
        if let v = accumulate { s.accumulate = v }
    }
}

struct ModelOptions: ParsableArguments {
    @Option(help: "Input height (default 256).") var height: Int?
    @Option(help: "Input width (default 128).") var width: Int?
    @Option(help: "Base width w of the ResNet (64 = ResNet-50).") var baseWidth: Int?
    @Option(help: "Bottleneck blocks per stage, e.g. 3,4,6,3.", transform: parseInts) var blocks: [Int]?
    @Option(help: "Stride of stage 4 (1 or 2; default 2).") var lastStride: Int?
    @Option(help: "Stages followed by a fully attentional block, e.g. 2,3,4.", transform: parseInts) var attentionStages: [Int]?
    @Option(help: "ImageNet weights: a safetensors file with torchvision/timm names, or a Mancs checkpoint.")
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
    @Option(help: "Evaluate on query/gallery every N epochs (0 = only at the end; default 0).") var evalEvery: Int?
    @Option(help: "Log every N steps (default 10).") var logEvery: Int?
    @Option(help: "Compare parameter checksums across ranks every N steps (default 100).") var checkReplicasEvery: Int?

    func apply(to s: inout TrainSettings) {
        if let v = seed { s.seed = v }; if let v = threads { s.threads = v }; if let v = loaderThreads { s.loaderThreads = v }
        if let v = checkpointEvery { s.checkpointEvery = v }; if let v = keepCheckpoints { s.keepCheckpoints = v }
        if let v = resume { s.resume = v }; if let v = evalEvery { s.evalEvery = v }; if let v = logEvery { s.logEvery = v }
        if let v = checkReplicasEvery { s.checkReplicasEvery = v }
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
