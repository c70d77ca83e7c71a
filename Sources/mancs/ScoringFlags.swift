import ArgumentParser
import ReIDEval

/// The distance, normalisation and re-ranking flags of `mancs eval` (and what
/// `mancs visualize`-like commands could reuse). See docs/evaluation.md.
struct ScoringFlags: ParsableArguments {
    @Option(help: "euclidean (squared Euclidean) or cosine (1 - cosine similarity, on L2-normalised features).")
    var distance: DistanceMetric = .euclidean

    @Flag(help: "L2-normalise the features before computing distances.")
    var normalize = false

    @Flag(help: "k-reciprocal re-ranking (Zhong et al., CVPR 2017) of the distances, as torchreid's re_ranking.")
    var rerank = false

    @Option(help: "Re-ranking: k1, size of the k-reciprocal neighbourhoods.")
    var k1 = 20

    @Option(help: "Re-ranking: k2, neighbours averaged by query expansion (1 = none).")
    var k2 = 6

    @Option(name: .customLong("lambda"), help: "Re-ranking: weight of the original distance (0...1).")
    var lambda: Float = 0.3

    func validate() throws {
        try FlagCheck.int("k1", k1, 1...10_000)
        try FlagCheck.int("k2", k2, 1...10_000)
        try FlagCheck.real("lambda", Double(lambda), max: 1)
    }

    /// `options` with these settings.
    func apply(to options: EvalOptions) -> EvalOptions {
        var o = options
        o.distance = distance
        o.normalize = normalize
        o.rerank = rerank ? RerankParameters(k1: k1, k2: k2, lambda: lambda) : nil
        return o
    }

    /// "cosine, normalised, re-ranked (k1 20, k2 6, lambda 0.3)" for titles; empty for the defaults.
    var summary: String {
        var parts: [String] = []
        if distance != .euclidean { parts.append(distance.rawValue) }
        if normalize { parts.append("normalised") }
        if rerank { parts.append("re-ranked (k1 \(k1), k2 \(k2), lambda \(lambda))") }
        return parts.joined(separator: ", ")
    }
}

extension DistanceMetric: ExpressibleByArgument {}
