import Foundation

/// The outcome of an evaluation. Every rate is a fraction in 0...1.
public struct EvalResult: Sendable, Equatable {
    /// cmc[k-1] = fraction of valid queries with a correct match within the top k;
    /// `cmc.count` is the effective max rank.
    public var cmc: [Double]
    public var mAP: Double
    public var mINP: Double
    public var numQuery: Int
    public var numGallery: Int
    /// Queries whose identity appears in the gallery under another camera.
    public var numValidQuery: Int

    public init(cmc: [Double], mAP: Double, mINP: Double, numQuery: Int, numGallery: Int, numValidQuery: Int) {
        self.cmc = cmc
        self.mAP = mAP
        self.mINP = mINP
        self.numQuery = numQuery
        self.numGallery = numGallery
        self.numValidQuery = numValidQuery
    }

    /// The rank-k rate (k from 1), or nil when k is beyond the CMC kept.
    public func rank(_ k: Int) -> Double? { k >= 1 && k <= cmc.count ? cmc[k - 1] : nil }

    // MARK: Reporting

    /// The JSON object of `mancs eval --json`: fractions in 0...1, `cmc` the first
    /// (up to) 50 ranks, null for a rank beyond the CMC kept.
    public func jsonObject() -> [String: Any] {
        func num(_ v: Double?) -> Any { v.map { $0 as Any } ?? NSNull() }
        return [
            "rank1": num(rank(1)), "rank5": num(rank(5)), "rank10": num(rank(10)), "rank20": num(rank(20)),
            "mAP": mAP, "mINP": mINP, "cmc": Array(cmc.prefix(50)),
            "num_query": numQuery, "num_gallery": numGallery, "num_valid_query": numValidQuery,
        ]
    }

    public func jsonData() throws -> Data {
        try JSONSerialization.data(withJSONObject: jsonObject(), options: [.sortedKeys])
    }

    /// A human-readable table, rates in percent.
    public func table(title: String) -> String {
        func pct(_ v: Double?) -> String { v.map { String(format: "%6.2f %%", $0 * 100) } ?? "     n/a" }
        var lines = [title]
        for k in [1, 5, 10, 20] { lines.append("  rank-\(k)\(k < 10 ? " " : "")  \(pct(rank(k)))") }
        lines.append("  mAP      \(pct(mAP))")
        lines.append("  mINP     \(pct(mINP))")
        lines.append("  queries  \(numQuery) (\(numValidQuery) valid), gallery \(numGallery)")
        return lines.joined(separator: "\n")
    }
}

// MARK: - Per-query outcomes and their reduction

/// One valid query's contribution: hit ranks are 0-based positions in its ranked,
/// filtered gallery (`hitRanks.count` draws: 1 for Market, `repeats` for CUHK03).
struct QueryScore: Sendable {
    var valid = false
    var ap = 0.0
    var inp = 0.0
    var firstHit = 0
}

/// Averages per-query scores in query order (so the sums do not depend on threads).
/// `firstHitCounts[r]` counts the draws whose first hit is at 0-based rank r (the last
/// bin: at maxRank or beyond); each valid query contributes `drawsPerQuery` draws.
func reduce(_ scores: [QueryScore], firstHitCounts: [Int], drawsPerQuery: Int, maxRank: Int, numGallery: Int) throws -> EvalResult {
    let valid = scores.lazy.filter(\.valid).count
    guard valid > 0 else {
        throw EvalError("evaluation: none of the \(scores.count) queries has its identity in the gallery "
                        + "under another camera (no valid query; metrics undefined)")
    }
    var ap = 0.0, inp = 0.0
    for s in scores where s.valid { ap += s.ap; inp += s.inp }
    var cmc = [Double](repeating: 0, count: maxRank)
    var acc = 0
    for k in 0..<maxRank { acc += firstHitCounts[k]; cmc[k] = Double(acc) / Double(valid * drawsPerQuery) }
    return EvalResult(cmc: cmc, mAP: ap / Double(valid), mINP: inp / Double(valid),
                      numQuery: scores.count, numGallery: numGallery, numValidQuery: valid)
}
