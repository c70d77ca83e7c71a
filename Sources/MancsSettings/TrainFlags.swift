import ArgumentParser
import MancsModel
import MancsTraining
import ReIDData
import ReIDEval

// mancs-dist's flags, by --help section. Every flag is optional on the parser so
// that "not given" can be told apart from "given the default": the precedence
// is flag > --config file > built-in default. A choice arrives as its text and
// is parsed by its enum when applied, so a bad value is one settings error
// ("--X must be a or b, got 'c'") like any other, not a parser usage error.

/// Every training flag: `apply` lays them over settings from the defaults or a config file.
public struct TrainFlags: ParsableArguments {
    @OptionGroup(title: "Data") public var data: DataFlags
    @OptionGroup(title: "Schedule") public var schedule: ScheduleFlags
    @OptionGroup(title: "Model") public var model: ModelFlags
    @OptionGroup(title: "Optimisation and losses") public var objective: ObjectiveFlags
    @OptionGroup(title: "Run control") public var run: RunFlags
    @OptionGroup(title: "Learning-rate schedule and weight decay") public var rate: LearningRateFlags
    @OptionGroup(title: "Evaluation") public var evaluation: EvaluationFlags

    public init() {}

    public func apply(to settings: inout TrainSettings) throws {
        try data.apply(to: &settings); try schedule.apply(to: &settings); try model.apply(to: &settings)
        try objective.apply(to: &settings); run.apply(to: &settings); try evaluation.apply(to: &settings)
        try rate.apply(to: &settings)
    }
}

public struct DataFlags: ParsableArguments {
    @Option(help: "Dataset root folder (e.g. Market-1501-v15.09.15, or the output of `mancs synth`; --dataset list: the list file, or the folder holding list.txt).")
    var data: String?
    @Option(help: ArgumentHelp("\(DatasetName.alternatives) (default \(DataSettings().dataset.rawValue))."))
    var dataset: String?
    @Option(help: "Run directory: checkpoints/, metrics.jsonl, config.yaml (default runs/mancs).")
    var runDir: String?
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if let v = data { settings.data.data = v }
        if let v = dataset { settings.data.dataset = try DatasetName(choice: v) }
        if let v = runDir { settings.run.runDir = v }
    }
}

public struct ScheduleFlags: ParsableArguments {
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
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if let v = epochs { settings.optimiser.epochs = v }; if let v = maxSteps { settings.optimiser.maxSteps = v }
        if let v = idsPerBatch { settings.data.idsPerBatch = v }; if let v = imagesPerId { settings.data.imagesPerId = v }
        if let v = accumulate { settings.optimiser.accumulate = v }
        if let v = tripletMining { settings.objective.tripletMining = try TripletMining(choice: v) }
        if let v = batchNorm { settings.model.batchNorm = try BatchNormMode(choice: v) }
    }
}

public struct ModelFlags: ParsableArguments {
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
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if let v = height { settings.model.height = v }; if let v = width { settings.model.width = v }
        if let v = baseWidth { settings.model.baseWidth = v }; if let v = blocks { settings.model.blocks = v }
        if let v = lastStride { settings.model.lastStride = v }
        if let v = attentionStages { settings.model.attentionStages = v }; if let v = pretrained { settings.model.pretrained = v }
        if let v = initialization { settings.model.initialization = try InitScheme(choice: v) }
    }
}

public struct ObjectiveFlags: ParsableArguments {
    @Option(help: "Adam learning rate (default 3e-4).") var lr: Double?
    @Option(help: "Global gradient-norm clip (default 5).") var clipNorm: Double?
    @Option(help: "Triplet margin (default 0.5).") var margin: Double?
    @Option(help: "Focal loss gamma (default 2).") var gamma: Double?
    @Option(help: "Weight of the triplet loss (default 1).") var lambdaRank: Double?
    @Option(help: "Weight of the focal loss (default 1).") var lambdaCls: Double?
    @Option(help: "Weight of the attention loss (default 0.2).") var lambdaAtt: Double?
    @Option(help: ArgumentHelp("Negative sampling: \(NegativesChoice.alternatives) (default \(ObjectiveSettings().negatives.rawValue)).")) var negatives: String?
    @Option(help: "Curriculum: epoch at which mu reaches 0 (default 30).") var t0: Double?
    @Option(help: "Curriculum: epoch at which sigma reaches a*b (default 60).") var t1: Double?
    @Option(name: .customLong("curriculum-a"), help: "Curriculum: initial sigma (default 15).") var curriculumA: Double?
    @Option(name: .customLong("curriculum-b"), help: "Curriculum: sigma decay factor (default 0.001).") var curriculumB: Double?
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if let v = lr { settings.optimiser.lr = v }; if let v = clipNorm { settings.optimiser.clipNorm = v }
        if let v = margin { settings.objective.margin = v }; if let v = gamma { settings.objective.gamma = v }
        if let v = lambdaRank { settings.objective.lambdaRank = v }
        if let v = lambdaCls { settings.objective.lambdaCls = v }; if let v = lambdaAtt { settings.objective.lambdaAtt = v }
        if let v = negatives { settings.objective.negatives = try NegativesChoice(choice: v) }
        if let v = t0 { settings.curriculum.t0 = v }; if let v = t1 { settings.curriculum.t1 = v }
        if let v = curriculumA { settings.curriculum.curriculumA = v }; if let v = curriculumB { settings.curriculum.curriculumB = v }
    }
}

public struct RunFlags: ParsableArguments {
    @Option(help: "Random seed: model init, batches, augmentation, sampling (default 0).") var seed: Int?
    @Option(help: "Compute threads per rank: GEMMs and layers are split over them (default 0 = this rank's share of the node: the cores it may run on, at most cores / ranks on the node). Several per rank under mpirun need --bind-to none or --map-by slot:PE=N.") var threads: Int?
    @Option(help: "Image decoding threads per rank (default 2).") var loaderThreads: Int?
    @Option(help: "Write a checkpoint every N steps (default 500; always at the end).") var checkpointEvery: Int?
    @Option(help: "Checkpoints to keep (default 3).") var keepCheckpoints: Int?
    @Option(help: "auto (newest valid checkpoint in RUN_DIR/checkpoints) | PATH | none (default auto).") var resume: ResumeChoice?
    @Flag(help: "Resume although settings that may change mid-run differ from the checkpoint's: --lr, --epochs, --triplet-mining, --batch-norm (the rest of the run's contract never may).") var resumeForce = false
    @Option(help: "Evaluate on query/gallery every N epochs (0 = only at the end; default 0).") var evalEvery: Int?
    @Option(help: "Also evaluate every N steps (0 = off; default 0): --eval-every in steps.") var evalEverySteps: Int?
    @Option(help: "Also write a checkpoint at the end of every N epochs (0 = off; default 0): --checkpoint-every in epochs.") var checkpointEveryEpochs: Int?
    @Option(help: "Log every N steps (default 10).") var logEvery: Int?
    @Option(help: "Compare parameter checksums across ranks every N steps (default 100).") var checkReplicasEvery: Int?
    public init() {}

    func apply(to settings: inout TrainSettings) {
        if let v = seed { settings.run.seed = v }; if let v = threads { settings.run.threads = v }
        if let v = loaderThreads { settings.data.loaderThreads = v }
        if let v = checkpointEvery { settings.run.checkpointEvery = v }; if let v = keepCheckpoints { settings.run.keepCheckpoints = v }
        if let v = resume { settings.run.resume = v }; if let v = evalEvery { settings.run.evalEvery = v }
        if let v = logEvery { settings.run.logEvery = v }
        if let v = checkReplicasEvery { settings.run.checkReplicasEvery = v }
        if resumeForce { settings.run.resumeForce = true }
        if let v = evalEverySteps { settings.run.evalEverySteps = v }
        if let v = checkpointEveryEpochs { settings.run.checkpointEveryEpochs = v }
    }
}

/// `--lr-schedule` and friends, and `--weight-decay` (see docs/training.md). The
/// defaults are the paper's: a constant rate, no warm-up, no decay.
public struct LearningRateFlags: ParsableArguments {
    @Option(help: ArgumentHelp("\(LearningRateSchedule.Kind.alternatives), stepped once per epoch as PyTorch's MultiStepLR / CosineAnnealingLR (default constant)."))
    var lrSchedule: String?
    @Option(help: "With --lr-schedule step: epochs at which the rate is multiplied by --lr-gamma, e.g. 40,70.", transform: parseInts)
    var lrMilestones: [Int]?
    @Option(help: "With --lr-schedule step: the factor at each milestone (default 0.1).")
    var lrGamma: Double?
    @Option(help: "Linear warm-up over the first N epochs, from --warmup-factor x lr to lr (default 0: none).")
    var warmupEpochs: Int?
    @Option(help: "Warm-up's starting factor, in (0, 1] (default 0.1).")
    var warmupFactor: Double?
    @Option(help: "L2 weight decay as torch.optim.Adam's weight_decay: added to the gradient before the moments (default 0).")
    var weightDecay: Double?
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if let v = lrSchedule { settings.optimiser.lrSchedule = try LearningRateSchedule.Kind(choice: v) }
        if let v = lrMilestones { settings.optimiser.lrMilestones = v }
        if let v = lrGamma { settings.optimiser.lrGamma = v }; if let v = warmupEpochs { settings.optimiser.warmupEpochs = v }
        if let v = warmupFactor { settings.optimiser.warmupFactor = v }; if let v = weightDecay { settings.optimiser.weightDecay = v }
    }
}

/// Test-time options of the evaluations during training (`--eval-every` and the
/// final one), the same as `mancs eval`'s --flip, --distance, --normalize and
/// --rerank (torchreid's k1 20, k2 6, lambda 0.3). See docs/evaluation.md.
public struct EvaluationFlags: ParsableArguments {
    @Flag(help: "Evaluations: average each image's features with its mirror image's (flip test).")
    var evalFlip = false
    @Option(help: "Evaluations: euclidean (squared) or cosine distance (default euclidean).")
    var evalDistance: String?
    @Flag(help: "Evaluations: L2-normalise the features first.")
    var evalNormalize = false
    @Flag(help: "Evaluations: also report rank-1/mAP/mINP after k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3); costs one (query+gallery)^2 GEMM per evaluation.")
    var evalRerank = false
    public init() {}

    func apply(to settings: inout TrainSettings) throws {
        if evalFlip { settings.evaluation.evalFlip = true }
        if let v = evalDistance { settings.evaluation.evalDistance = try DistanceMetric(choice: v) }
        if evalNormalize { settings.evaluation.evalNormalize = true }
        if evalRerank { settings.evaluation.evalRerank = true }
    }
}

/// "3,4,6,3" -> [3, 4, 6, 3].
public func parseInts(_ text: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count else {
        throw ValidationError("expected comma-separated integers such as 3,4,6,3, got '\(text)'")
    }
    return values
}
