import MancsModel
import MancsTraining
import ReIDData
import ReIDEval

// The groups of a training run's settings. Each field's key (in config files,
// config.yaml and checkpoints) is its flag name; a group decodes only the keys
// present, so a partial config file keeps every other default. Each group
// converts itself to the type of the library that uses it, here and nowhere else.

/// What to train on and how batches are drawn.
public struct DataSettings: Codable, Equatable, Sendable {
    /// The dataset's root folder.
    public var data: String = ""
    public var dataset: DatasetName = .market1501
    /// P: identities per global batch.
    public var idsPerBatch: Int = 16
    /// K: images per identity.
    public var imagesPerId: Int = 4
    /// Image decoding threads per rank.
    public var loaderThreads: Int = 2

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, dataset, idsPerBatch = "ids-per-batch", imagesPerId = "images-per-id", loaderThreads = "loader-threads"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&data, .data); try c.update(&dataset, .dataset)
        try c.update(&idsPerBatch, .idsPerBatch); try c.update(&imagesPerId, .imagesPerId)
        try c.update(&loaderThreads, .loaderThreads)
    }
}

/// The network's architecture and initialisation, and how training BatchNorm normalises.
public struct ModelSettings: Codable, Equatable, Sendable {
    public var height: Int = 256
    public var width: Int = 128
    /// Base width w of the ResNet (64 = ResNet-50).
    public var baseWidth: Int = 64
    public var blocks: [Int] = [3, 4, 6, 3]
    public var lastStride: Int = 2
    public var attentionStages: [Int] = [2, 3, 4]
    /// ImageNet weights: a safetensors file or a Mancs checkpoint.
    public var pretrained: String? = nil
    /// Initialisation of the layers `pretrained` does not cover.
    public var initialization: InitScheme = .pytorch
    public var batchNorm: BatchNormMode = .sync

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case height, width, baseWidth = "base-width", blocks, lastStride = "last-stride",
             attentionStages = "attention-stages", pretrained, initialization = "init", batchNorm = "batch-norm"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&height, .height); try c.update(&width, .width); try c.update(&baseWidth, .baseWidth)
        try c.update(&blocks, .blocks); try c.update(&lastStride, .lastStride)
        try c.update(&attentionStages, .attentionStages); try c.update(&pretrained, .pretrained)
        try c.update(&initialization, .initialization); try c.update(&batchNorm, .batchNorm)
    }

    /// The network of these settings for a training split of `numClasses` identities.
    public func mancsConfig(numClasses: Int) -> MancsConfig {
        var config = MancsConfig()
        config.baseWidth = baseWidth; config.blocks = blocks; config.lastStride = lastStride
        config.attentionStages = attentionStages; config.height = height; config.width = width
        config.numClasses = numClasses
        return config
    }

    /// The settings that must be equal for a checkpoint to continue this run
    /// bit-exactly (the model's shape).
    public var architectureSummary: String {
        "base-width \(baseWidth), blocks \(blocks), last-stride \(lastStride), attention-stages \(attentionStages), \(height)x\(width)"
    }
}

/// The three losses, their weights, and how the triplet loss finds its negatives.
public struct ObjectiveSettings: Codable, Equatable, Sendable {
    /// Triplet margin.
    public var margin: Double = 0.5
    /// Focal loss gamma.
    public var gamma: Double = 2
    public var lambdaRank: Double = 1
    public var lambdaCls: Double = 1
    public var lambdaAtt: Double = 0.2
    public var negatives: NegativesChoice = .curriculum
    public var tripletMining: TripletMining = .global

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case margin, gamma, lambdaRank = "lambda-rank", lambdaCls = "lambda-cls", lambdaAtt = "lambda-att", negatives,
             tripletMining = "triplet-mining"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&margin, .margin); try c.update(&gamma, .gamma)
        try c.update(&lambdaRank, .lambdaRank); try c.update(&lambdaCls, .lambdaCls); try c.update(&lambdaAtt, .lambdaAtt)
        try c.update(&negatives, .negatives); try c.update(&tripletMining, .tripletMining)
    }

    /// The loss weights as the training step takes them.
    public var lossSettings: LossSettings {
        LossSettings(margin: Float(margin), gamma: Float(gamma), lambdaRank: Float(lambdaRank),
                     lambdaCls: Float(lambdaCls), lambdaAtt: Float(lambdaAtt))
    }
}

/// Curriculum sampling of negatives: mu = max(Nn - Nn/t0 * t, 0), sigma = a * b^((t-t0)/(t1-t0)).
public struct CurriculumSettings: Codable, Equatable, Sendable {
    public var t0: Double = 30
    public var t1: Double = 60
    public var curriculumA: Double = 15
    public var curriculumB: Double = 0.001

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case t0, t1, curriculumA = "curriculum-a", curriculumB = "curriculum-b"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&t0, .t0); try c.update(&t1, .t1)
        try c.update(&curriculumA, .curriculumA); try c.update(&curriculumB, .curriculumB)
    }

    public var schedule: CurriculumSchedule { CurriculumSchedule(t0: t0, t1: t1, a: curriculumA, b: curriculumB) }
}

/// How long, how fast and in what steps the parameters move: Adam, clipping,
/// the learning-rate schedule and weight decay (defaults: the paper's constant
/// rate, no decay).
public struct OptimiserSettings: Codable, Equatable, Sendable {
    public var epochs: Int = 160
    /// Stop at this global step (counted over the whole run, across resumes).
    public var maxSteps: Int? = nil
    /// Micro-batches per step.
    public var accumulate: Int = 1
    /// Adam's learning rate.
    public var lr: Double = 3e-4
    /// Global gradient-norm clip.
    public var clipNorm: Double = 5
    public var lrSchedule: LearningRateSchedule.Kind = .constant
    public var lrMilestones: [Int] = []
    public var lrGamma: Double = 0.1
    public var warmupEpochs: Int = 0
    public var warmupFactor: Double = 0.1
    public var weightDecay: Double = 0

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case epochs, maxSteps = "max-steps", accumulate, lr, clipNorm = "clip-norm", lrSchedule = "lr-schedule",
             lrMilestones = "lr-milestones", lrGamma = "lr-gamma", warmupEpochs = "warmup-epochs",
             warmupFactor = "warmup-factor", weightDecay = "weight-decay"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&epochs, .epochs); try c.update(&maxSteps, .maxSteps); try c.update(&accumulate, .accumulate)
        try c.update(&lr, .lr); try c.update(&clipNorm, .clipNorm)
        try c.update(&lrSchedule, .lrSchedule); try c.update(&lrMilestones, .lrMilestones); try c.update(&lrGamma, .lrGamma)
        try c.update(&warmupEpochs, .warmupEpochs); try c.update(&warmupFactor, .warmupFactor)
        try c.update(&weightDecay, .weightDecay)
    }

    /// The learning rate of each epoch.
    public var learningRateSchedule: LearningRateSchedule {
        LearningRateSchedule(kind: lrSchedule, baseLR: lr, epochs: epochs, milestones: lrMilestones, gamma: lrGamma,
                             warmupEpochs: warmupEpochs, warmupFactor: warmupFactor)
    }
}

/// Where the run lives and when it logs, checks, evaluates and checkpoints.
public struct RunSettings: Codable, Equatable, Sendable {
    public var runDir: String = "runs/mancs"
    public var seed: Int = 0
    /// Compute threads per rank; 0 = this rank's share of the node, resolved before the run starts.
    public var threads: Int = 0
    public var checkpointEvery: Int = 500
    public var keepCheckpoints: Int = 3
    public var resume: ResumeChoice = .auto
    /// Resume although --lr, --epochs, --triplet-mining or --batch-norm differ from the checkpoint's run.
    public var resumeForce: Bool = false
    /// Evaluate every N epochs (0 = only at the end).
    public var evalEvery: Int = 0
    /// The same intervals in the other unit (0 = off); an evaluation or checkpoint is due when either is.
    public var evalEverySteps: Int = 0
    public var checkpointEveryEpochs: Int = 0
    public var logEvery: Int = 10
    public var checkReplicasEvery: Int = 100

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case runDir = "run-dir", seed, threads, checkpointEvery = "checkpoint-every", keepCheckpoints = "keep-checkpoints",
             resume, resumeForce = "resume-force", evalEvery = "eval-every", evalEverySteps = "eval-every-steps",
             checkpointEveryEpochs = "checkpoint-every-epochs", logEvery = "log-every",
             checkReplicasEvery = "check-replicas-every"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&runDir, .runDir); try c.update(&seed, .seed); try c.update(&threads, .threads)
        try c.update(&checkpointEvery, .checkpointEvery); try c.update(&keepCheckpoints, .keepCheckpoints)
        try c.update(&resume, .resume); try c.update(&resumeForce, .resumeForce)
        try c.update(&evalEvery, .evalEvery); try c.update(&evalEverySteps, .evalEverySteps)
        try c.update(&checkpointEveryEpochs, .checkpointEveryEpochs)
        try c.update(&logEvery, .logEvery); try c.update(&checkReplicasEvery, .checkReplicasEvery)
    }
}

/// Test-time options of the evaluations during training (as `mancs eval`'s).
public struct EvaluationSettings: Codable, Equatable, Sendable {
    public var evalFlip: Bool = false
    public var evalDistance: DistanceMetric = .euclidean
    public var evalNormalize: Bool = false
    public var evalRerank: Bool = false

    public init() {}
    enum CodingKeys: String, CodingKey, CaseIterable {
        case evalFlip = "eval-flip", evalDistance = "eval-distance", evalNormalize = "eval-normalize",
             evalRerank = "eval-rerank"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.update(&evalFlip, .evalFlip); try c.update(&evalDistance, .evalDistance)
        try c.update(&evalNormalize, .evalNormalize); try c.update(&evalRerank, .evalRerank)
    }
}

extension KeyedDecodingContainer {
    /// Overwrites `value` with the key's value when the key is present.
    func update<T: Decodable>(_ value: inout T, _ key: Key) throws {
        if let v = try decodeIfPresent(T.self, forKey: key) { value = v }
    }
    /// A choice, refused with its own message (the flag and the allowed values).
    func update<T: SettingChoice>(_ value: inout T, _ key: Key) throws {
        if let text = try decodeIfPresent(String.self, forKey: key) { value = try T(choice: text) }
    }
}
