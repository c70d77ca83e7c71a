// MARK: - Market-1501 multi-query

/// Market-1501's multi-query protocol: each query's feature is replaced by the
/// mean of the multi-query set's features (the gt_bbox images) with the same
/// identity AND camera; a query with no such image keeps its own feature. The
/// result keeps the query's pids, camids and paths.
public func multiQueryAverage(query: FeatureSet, multiQuery: FeatureSet) throws -> FeatureSet {
    guard multiQuery.dim == query.dim else {
        throw EvalError("multi-query: query has dimension \(query.dim) but the multi-query set has \(multiQuery.dim)")
    }
    struct Key: Hashable { var pid: Int64; var cam: Int64 }
    let dim = query.dim
    // Sum (in Double, so the order of images does not matter) per (pid, camera).
    var sums: [Key: (sum: [Double], count: Int)] = [:]
    for i in 0..<multiQuery.count {
        let key = Key(pid: multiQuery.pids[i], cam: multiQuery.camids[i])
        var entry = sums[key] ?? ([Double](repeating: 0, count: dim), 0)
        for k in 0..<dim { entry.sum[k] += Double(multiQuery.features[i * dim + k]) }
        entry.count += 1
        sums[key] = entry
    }
    var features = query.features
    for q in 0..<query.count {
        guard let entry = sums[Key(pid: query.pids[q], cam: query.camids[q])] else { continue }
        for k in 0..<dim { features[q * dim + k] = Float(entry.sum[k] / Double(entry.count)) }
    }
    return try FeatureSet(features: features, dim: dim, pids: query.pids, camids: query.camids,
                          paths: query.paths, name: "multi-query")
}
