import Foundation
import MancsModel

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
    // Run control
    var seed: Int = 0
    /// 0 = automatic (`ProcessEnvironment.defaultComputeThreads`), resolved before the run starts.
    var threads: Int = 0
    var loaderThreads: Int = 2
    var checkpointEvery: Int = 500
    var keepCheckpoints: Int = 3
    var resume: String = "auto"
    var evalEvery: Int = 0
    var logEvery: Int = 10
    var checkReplicasEvery: Int = 100

    enum CodingKeys: String, CodingKey, CaseIterable {
        case data, dataset, runDir = "run-dir", epochs, maxSteps = "max-steps", idsPerBatch = "ids-per-batch",
             imagesPerId = "images-per-id", accumulate, height, width, baseWidth = "base-width", blocks,
             lastStride = "last-stride", attentionStages = "attention-stages", pretrained, initialization = "init", lr,
             clipNorm = "clip-norm", margin, gamma, lambdaRank = "lambda-rank", lambdaCls = "lambda-cls",
             lambdaAtt = "lambda-att", negatives, t0, t1, curriculumA = "curriculum-a", curriculumB = "curriculum-b",
             seed, threads, loaderThreads = "loader-threads", checkpointEvery = "checkpoint-every",
             keepCheckpoints = "keep-checkpoints", resume, evalEvery = "eval-every", logEvery = "log-every",
             checkReplicasEvery = "check-replicas-every"
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
        resume = try v(.resume, resume); evalEvery = try v(.evalEvery, evalEvery); logEvery = try v(.logEvery, logEvery)
        checkReplicasEvery = try v(.checkReplicasEvery, checkReplicasEvery)
    }

    /// The settings that must be equal for a checkpoint to continue this run
    /// bit-exactly (the model's shape and the batch stream).
    var architectureSummary: String {
        "base-width \(baseWidth), blocks \(blocks), last-stride \(lastStride), attention-stages \(attentionStages), \(height)x\(width)"
    }

    /// Checks what can be checked without the data or MPI.
    func validate() throws {
        func bad(_ s: String) -> SettingsError { SettingsError(s) }
        if data.isEmpty { throw bad("--data is required: the dataset's root folder (try `mancs synth --out DIR` for a synthetic one)") }
        let datasets = ["market1501", "dukemtmc", "cuhk03-labeled", "cuhk03-detected"]
        if !datasets.contains(dataset) { throw bad("--dataset must be one of \(datasets.joined(separator: ", ")), got '\(dataset)'") }
        if idsPerBatch < 2 { throw bad("--ids-per-batch (P) must be at least 2: triplets need negatives") }
        if imagesPerId < 2 { throw bad("--images-per-id (K) must be at least 2: triplets need positives") }
        if accumulate < 1 { throw bad("--accumulate must be at least 1") }
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
        if height < 32 || width < 16 { throw bad("--height and --width must be at least 32 and 16, got \(height)x\(width)") }
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
