import Foundation
import MancsTraining
import MancsModel
import ReIDData

/// Every setting of a training run, in one value: the defaults, overridden by
/// `--config FILE.yaml`, overridden by command-line flags. Written to
/// `RUN_DIR/config.yaml` and (as JSON) into every checkpoint. Keys are the flag
/// names, so a config file reads like the command line.
struct TrainSettings: Codable, Equatable {
    // Data
    var data: String = ""
    var dataset: String = "market1501"
    var runDir: String = "runs/mancs"
    // Schedule
    var epochs: Int = 160
    var maxSteps: Int? = nil
    var idsPerBatch: Int = 16
    var imagesPerId: Int = 4
    var accumulate: Int = 1
    /// global: triplets mined over the whole (micro-)batch of every rank; local: over each rank's shard.
    var tripletMining: String = "global"
    /// sync: training BatchNorm uses the whole (micro-)batch's statistics; local: each rank's shard's.
    var batchNorm: String = "sync"
    // Model
    var height: Int = 256
    var width: Int = 128
    var baseWidth: Int = 64
    var blocks: [Int] = [3, 4, 6, 3]
    var lastStride: Int = 2
    var attentionStages: [Int] = [2, 3, 4]
    var pretrained: String? = nil
    /// Initialisation of the layers --pretrained does not cover: pytorch | torchvision (`InitScheme`).
    var initialization: String = "pytorch"
    // Optimisation and losses
    var lr: Double = 3e-4
    var clipNorm: Double = 5
    var margin: Double = 0.5
    var gamma: Double = 2
    var lambdaRank: Double = 1
    var lambdaCls: Double = 1
    var lambdaAtt: Double = 0.2
    var negatives: String = "curriculum"
    var t0: Double = 30
    var t1: Double = 60
    var curriculumA: Double = 15
    var curriculumB: Double = 0.001
    // Learning-rate schedule and L2 weight decay (defaults: the paper's constant rate, no decay)
    var lrSchedule: String = "constant"
    var lrMilestones: [Int] = []
    var lrGamma: Double = 0.1
    var warmupEpochs: Int = 0
    var warmupFactor: Double = 0.1
    var weightDecay: Double = 0
    // Run control
    var seed: Int = 0
    /// 0 = automatic (`NodeShare.defaultComputeThreads`), resolved before the run starts.
    var threads: Int = 0
    var loaderThreads: Int = 2
    var checkpointEvery: Int = 500
    var keepCheckpoints: Int = 3
    var resume: String = "auto"
    /// Resume although --lr, --epochs, --triplet-mining or --batch-norm differ from the checkpoint's run.
    var resumeForce: Bool = false
    var evalEvery: Int = 0
    /// The same intervals in the other unit (0 = off); an evaluation or checkpoint is due when either is.
    var evalEverySteps: Int = 0
    var checkpointEveryEpochs: Int = 0
    var logEvery: Int = 10
    var checkReplicasEvery: Int = 100
    // Evaluation (test-time options)
    var evalFlip: Bool = false
    var evalDistance: String = "euclidean"
    var evalNormalize: Bool = false
    var evalRerank: Bool = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, dataset, runDir = "run-dir", epochs, maxSteps = "max-steps", idsPerBatch = "ids-per-batch",
             imagesPerId = "images-per-id", accumulate, tripletMining = "triplet-mining", batchNorm = "batch-norm", height, width, baseWidth = "base-width", blocks,
             lastStride = "last-stride", attentionStages = "attention-stages", pretrained, initialization = "init", lr,
             clipNorm = "clip-norm", margin, gamma, lambdaRank = "lambda-rank", lambdaCls = "lambda-cls",
             lambdaAtt = "lambda-att", negatives, t0, t1, curriculumA = "curriculum-a", curriculumB = "curriculum-b",
             seed, threads, loaderThreads = "loader-threads", checkpointEvery = "checkpoint-every",
             keepCheckpoints = "keep-checkpoints", resume, resumeForce = "resume-force", evalEvery = "eval-every", logEvery = "log-every",
             checkReplicasEvery = "check-replicas-every"
        case evalEverySteps = "eval-every-steps", checkpointEveryEpochs = "checkpoint-every-epochs"
        case lrSchedule = "lr-schedule", lrMilestones = "lr-milestones", lrGamma = "lr-gamma",
             warmupEpochs = "warmup-epochs", warmupFactor = "warmup-factor", weightDecay = "weight-decay"
        case evalFlip = "eval-flip", evalDistance = "eval-distance", evalNormalize = "eval-normalize",
             evalRerank = "eval-rerank"
    }

    init() {}

    /// Decodes a partial settings object: absent keys keep their defaults,
    /// unknown keys are an error (a typo in a config file must not pass silently).
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.stringValue))
        if let unknown = c.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw SettingsError("unknown setting '\(unknown.stringValue)' (settings are the flag names, e.g. ids-per-batch)")
        }
        let k = try decoder.container(keyedBy: CodingKeys.self)
        func v<T: Decodable>(_ key: CodingKeys, _ current: T) throws -> T {
            try k.decodeIfPresent(T.self, forKey: key) ?? current
        }
        data = try v(.data, data); dataset = try v(.dataset, dataset); runDir = try v(.runDir, runDir)
        epochs = try v(.epochs, epochs); maxSteps = try k.decodeIfPresent(Int.self, forKey: .maxSteps)
        idsPerBatch = try v(.idsPerBatch, idsPerBatch); imagesPerId = try v(.imagesPerId, imagesPerId)
        accumulate = try v(.accumulate, accumulate)
        tripletMining = try v(.tripletMining, tripletMining); batchNorm = try v(.batchNorm, batchNorm)
        height = try v(.height, height); width = try v(.width, width); baseWidth = try v(.baseWidth, baseWidth)
        blocks = try v(.blocks, blocks); lastStride = try v(.lastStride, lastStride)
        attentionStages = try v(.attentionStages, attentionStages)
        pretrained = try k.decodeIfPresent(String.self, forKey: .pretrained)
        initialization = try v(.initialization, initialization)
        lr = try v(.lr, lr); clipNorm = try v(.clipNorm, clipNorm); margin = try v(.margin, margin)
        gamma = try v(.gamma, gamma); lambdaRank = try v(.lambdaRank, lambdaRank)
        lambdaCls = try v(.lambdaCls, lambdaCls); lambdaAtt = try v(.lambdaAtt, lambdaAtt)
        negatives = try v(.negatives, negatives); t0 = try v(.t0, t0); t1 = try v(.t1, t1)
        curriculumA = try v(.curriculumA, curriculumA); curriculumB = try v(.curriculumB, curriculumB)
        seed = try v(.seed, seed); threads = try v(.threads, threads); loaderThreads = try v(.loaderThreads, loaderThreads)
        checkpointEvery = try v(.checkpointEvery, checkpointEvery); keepCheckpoints = try v(.keepCheckpoints, keepCheckpoints)
        resume = try v(.resume, resume); resumeForce = try v(.resumeForce, resumeForce); evalEvery = try v(.evalEvery, evalEvery); logEvery = try v(.logEvery, logEvery)
        checkReplicasEvery = try v(.checkReplicasEvery, checkReplicasEvery)
        evalEverySteps = try v(.evalEverySteps, evalEverySteps)
        checkpointEveryEpochs = try v(.checkpointEveryEpochs, checkpointEveryEpochs)
        lrSchedule = try v(.lrSchedule, lrSchedule); lrMilestones = try v(.lrMilestones, lrMilestones)
        lrGamma = try v(.lrGamma, lrGamma); warmupEpochs = try v(.warmupEpochs, warmupEpochs)
        warmupFactor = try v(.warmupFactor, warmupFactor); weightDecay = try v(.weightDecay, weightDecay)
        evalFlip = try v(.evalFlip, evalFlip); evalDistance = try v(.evalDistance, evalDistance)
        evalNormalize = try v(.evalNormalize, evalNormalize); evalRerank = try v(.evalRerank, evalRerank)
    }

    /// The settings that must be equal for a checkpoint to continue this run
    /// bit-exactly (the model's shape and the batch stream).
    var architectureSummary: String {
        "base-width \(baseWidth), blocks \(blocks), last-stride \(lastStride), attention-stages \(attentionStages), \(height)x\(width)"
    }

    /// The learning rate of each epoch (nil for an unknown --lr-schedule).
    var learningRateSchedule: LearningRateSchedule? {
        LearningRateSchedule.Kind(rawValue: lrSchedule).map {
            LearningRateSchedule(kind: $0, baseLR: lr, epochs: epochs, milestones: lrMilestones, gamma: lrGamma,
                                 warmupEpochs: warmupEpochs, warmupFactor: warmupFactor)
        }
    }

    /// Checks what can be checked without the data or MPI.
    func validate() throws {
        func bad(_ s: String) -> SettingsError { SettingsError(s) }
        if data.isEmpty { throw bad("--data is required: the dataset's root folder (try `mancs synth --out DIR` for a synthetic one)") }
        let datasets = DatasetName.allCases.map(\.rawValue)
        if !datasets.contains(dataset) { throw bad("--dataset must be one of \(datasets.joined(separator: ", ")), got '\(dataset)'") }
        if idsPerBatch < 2 { throw bad("--ids-per-batch (P) must be at least 2: triplets need negatives") }
        if imagesPerId < 2 { throw bad("--images-per-id (K) must be at least 2: triplets need positives") }
        if accumulate < 1 { throw bad("--accumulate must be at least 1") }
        if !["global", "local"].contains(tripletMining) {
            throw bad("--triplet-mining must be global or local, got '\(tripletMining)'")
        }
        if !["sync", "local"].contains(batchNorm) { throw bad("--batch-norm must be sync or local, got '\(batchNorm)'") }
        if epochs < 1 { throw bad("--epochs must be at least 1") }
        if let m = maxSteps, m < 1 { throw bad("--max-steps must be at least 1") }
        if !["curriculum", "hardest", "random"].contains(negatives) {
            throw bad("--negatives must be curriculum, hardest or random, got '\(negatives)'")
        }
        if InitScheme(rawValue: initialization) == nil {
            throw bad("--init must be \(InitScheme.allCases.map(\.rawValue).joined(separator: " or ")), got '\(initialization)'")
        }
        if t1 <= t0 { throw bad("--t1 must be greater than --t0") }
        if lr <= 0 { throw bad("--lr must be positive") }
        if clipNorm <= 0 { throw bad("--clip-norm must be positive") }
        if threads < 0 { throw bad("--threads must be at least 1 (or 0 for this rank's share of the cores), got \(threads)") }
        if loaderThreads < 1 { throw bad("--loader-threads must be at least 1, got \(loaderThreads)") }
        if checkpointEvery < 1 || keepCheckpoints < 1 || logEvery < 1 {
            throw bad("--checkpoint-every, --keep-checkpoints and --log-every must be at least 1")
        }
        if evalEverySteps < 0 || checkpointEveryEpochs < 0 {
            throw bad("--eval-every-steps and --checkpoint-every-epochs must be at least 0 (0 = off)")
        }
        guard let schedule = learningRateSchedule else {
            throw bad("--lr-schedule must be constant, step or cosine, got '\(lrSchedule)'")
        }
        if let p = schedule.problem() { throw bad(p) }
        if !(weightDecay >= 0) { throw bad("--weight-decay must be at least 0, got \(weightDecay)") }
        if !["euclidean", "cosine"].contains(evalDistance) {
            throw bad("--eval-distance must be euclidean or cosine, got '\(evalDistance)'")
        }
        if height < 32 || width < 16 { throw bad("--height and --width must be at least 32 and 16, got \(height)x\(width)") }
        try validateRanges()
    }

    /// Every numeric setting in its range (finite; positive where it must be),
    /// each refusal naming the flag: a NaN or a zero must not reach the loop.
    func validateRanges() throws {
        func real(_ flag: String, _ x: Double, positive: Bool = false) throws {
            guard x.isFinite, positive ? x > 0 : x >= 0 else {
                throw SettingsError("--\(flag) must be a finite \(positive ? "positive" : "non-negative") number, got \(x)")
            }
        }
        func int(_ flag: String, _ x: Int, _ range: ClosedRange<Int>) throws {
            guard range.contains(x) else {
                throw SettingsError("--\(flag) must be between \(range.lowerBound) and \(range.upperBound), got \(x)")
            }
        }
        try real("lr", lr, positive: true); try real("clip-norm", clipNorm, positive: true)
        try real("margin", margin); try real("gamma", gamma)
        try real("lambda-rank", lambdaRank); try real("lambda-cls", lambdaCls); try real("lambda-att", lambdaAtt)
        try real("t0", t0); try real("t1", t1); try real("curriculum-a", curriculumA); try real("curriculum-b", curriculumB)
        try int("seed", seed, 0...Int.max)
        try int("check-replicas-every", checkReplicasEvery, 1...Int.max)
        try int("eval-every", evalEvery, 0...1_000_000)
        try int("epochs", epochs, 1...1_000_000)
        try int("ids-per-batch", idsPerBatch, 2...65_536); try int("images-per-id", imagesPerId, 2...65_536)
        try int("accumulate", accumulate, 1...65_536)
        try int("threads", threads, 0...4096); try int("loader-threads", loaderThreads, 1...256)
        try int("height", height, 32...4096); try int("width", width, 16...4096)
        try int("base-width", baseWidth, 1...1024); try int("last-stride", lastStride, 1...2)
        guard blocks.count == 4, blocks.allSatisfy({ (1...64).contains($0) }) else {
            throw SettingsError("--blocks must be four counts between 1 and 64, got \(blocks)")
        }
    }
}

struct SettingsError: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
