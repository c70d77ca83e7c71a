import ArgumentParser

/// Test-time options of the evaluations during training (`--eval-every` and the
/// final one), the same as `mancs eval`'s --flip, --distance, --normalize and
/// --rerank (torchreid's k1 20, k2 6, lambda 0.3). See docs/evaluation.md.
struct EvaluationOptions: ParsableArguments {
    @Flag(help: "Evaluations: average each image's features with its mirror image's (flip test).")
    var evalFlip = false
    @Option(help: "Evaluations: euclidean (squared) or cosine distance (default euclidean).")
    var evalDistance: String?
    @Flag(help: "Evaluations: L2-normalise the features first.")
    var evalNormalize = false
    @Flag(help: "Evaluations: also report rank-1/mAP/mINP after k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3); costs one (query+gallery)^2 GEMM per evaluation.")
    var evalRerank = false

    func apply(to s: inout TrainSettings) {
        if evalFlip { s.evalFlip = true }
        if let v = evalDistance { s.evalDistance = v }
        if evalNormalize { s.evalNormalize = true }
        if evalRerank { s.evalRerank = true }
    }
}
