// MARK: - One entry point for the CLI and the trainer

/// The evaluation protocols of docs/method.md §5.
public enum EvalProtocol: String, Sendable, CaseIterable {
    /// Market-1501, DukeMTMC-reID, CUHK03 767/700 (torchreid `eval_market1501`).
    case market
    /// CUHK03 classic 1367/100 split: single-gallery-shot CMC over `repeats` draws.
    case cuhk03Classic = "cuhk03-classic"
}

/// Evaluates a features file: optional multi-query averaging (needs the file's
/// `/multiquery` group), then the protocol.
public func evaluate(
    _ file: FeaturesFile, protocol evalProtocol: EvalProtocol = .market, multiQuery: Bool = false,
    options: EvalOptions = EvalOptions(), repeats: Int = 10, seed: UInt64 = 0
) throws -> EvalResult {
    var query = file.query
    if multiQuery {
        guard let mq = file.multiQuery else {
            throw EvalError("multi-query evaluation needs a /multiquery group (features, pids, camids) in the features file")
        }
        query = try multiQueryAverage(query: query, multiQuery: mq)
    }
    switch evalProtocol {
    case .market:
        return try evaluateMarket(query: query, gallery: file.gallery, options: options)
    case .cuhk03Classic:
        return try evaluateCUHK03Classic(query: query, gallery: file.gallery, options: options, repeats: repeats, seed: seed)
    }
}
