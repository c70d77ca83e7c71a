import DeterministicRandom

// MARK: - CUHK03 classic split (1367/100): single-gallery-shot, torchreid `eval_cuhk03`
//
// For each query: rank the gallery (stable by index on ties), drop same pid AND
// same camera, skip the query if no match remains. Then, `repeats` times, keep one
// randomly chosen image per remaining gallery identity and take the CMC of that
// reduced list; the query's CMC is the mean over the repeats. AP (and INP) are
// computed on the whole filtered list, exactly as the Market protocol.
//
// torchreid draws with numpy's global generator; here each query has its own
// SplitMix64 stream (DeterministicRandom) seeded from (seed, query index), so results are reproducible
// and independent of the thread count. Identities are visited in order of first
// appearance in the ranked list, as torchreid's dict is.

/// Scratch of one ranking worker.
struct CUHK03Scratch {
    var order: [Int32] = []
    var keptPids: [Int64] = []
    var groupOf: [Int] = []            // group (identity) of each kept position
    var groupStart: [Int] = []         // members of group k: members[groupStart[k] ..< groupStart[k+1]]
    var members: [Int] = []
    var chosen: [Int] = []
}

/// Per query: the market-style AP/INP and the `repeats` single-shot hit ranks.
struct CUHK03QueryScore: Sendable {
    var score = QueryScore()
    var shotRanks: [Int] = []
}

func scoreCUHK03Query(
    distances d: UnsafePointer<Float>, galleryCount g: Int, queryPid: Int64, queryCam: Int64,
    galleryPids: UnsafePointer<Int64>, galleryCams: UnsafePointer<Int64>,
    repeats: Int, rng: inout SplitMix64, scratch s: inout CUHK03Scratch
) -> CUHK03QueryScore {
    // Stable argsort of the distance row, then the protocol's filter.
    s.order.removeAll(keepingCapacity: true)
    s.order.append(contentsOf: (0..<Int32(g)))
    s.order.sort { a, b in d[Int(a)] < d[Int(b)] || (d[Int(a)] == d[Int(b)] && a < b) }
    s.keptPids.removeAll(keepingCapacity: true)
    for j32 in s.order {
        let j = Int(j32)
        if galleryPids[j] == queryPid && galleryCams[j] == queryCam { continue }
        s.keptPids.append(galleryPids[j])
    }
    // AP and INP over the whole filtered list.
    var hits = 0, last = 0, first = -1
    var precisionSum = 0.0
    for (rank, p) in s.keptPids.enumerated() where p == queryPid {
        hits += 1
        precisionSum += Double(hits) / Double(rank + 1)
        if first < 0 { first = rank }
        last = rank
    }
    guard hits > 0 else { return CUHK03QueryScore() }
    let score = QueryScore(valid: true, ap: precisionSum / Double(hits), inp: Double(hits) / Double(last + 1),
                           firstHit: first)

    // Group kept positions by identity, identities in order of first appearance.
    var groupIndex: [Int64: Int] = [:]
    s.groupOf.removeAll(keepingCapacity: true)
    var sizes: [Int] = []
    for p in s.keptPids {
        let k = groupIndex[p] ?? { let k = sizes.count; groupIndex[p] = k; sizes.append(0); return k }()
        sizes[k] += 1
        s.groupOf.append(k)
    }
    s.groupStart = [0]
    for n in sizes { s.groupStart.append(s.groupStart.last! + n) }
    s.members = [Int](repeating: 0, count: s.keptPids.count)
    var fill = Array(s.groupStart.dropLast())
    for (pos, k) in s.groupOf.enumerated() { s.members[fill[k]] = pos; fill[k] += 1 }
    let queryGroup = groupIndex[queryPid]!

    // Each repeat keeps one image per identity; the hit rank is the number of
    // kept images (one per other identity) ranked before the query identity's.
    var shotRanks: [Int] = []
    shotRanks.reserveCapacity(repeats)
    for _ in 0..<repeats {
        s.chosen.removeAll(keepingCapacity: true)
        for k in 0..<sizes.count {
            let lo = s.groupStart[k]
            // next() % n, not `below`: the draw torchreid-style tests replay (bias < 2^-40 for small n).
            s.chosen.append(s.members[lo + Int(rng.next() % UInt64(sizes[k]))])
        }
        let target = s.chosen[queryGroup]
        shotRanks.append(s.chosen.lazy.filter { $0 < target }.count)
    }
    return CUHK03QueryScore(score: score, shotRanks: shotRanks)
}

/// CUHK03 classic-split evaluation (single-gallery-shot CMC averaged over `repeats`
/// draws, torchreid `eval_cuhk03`), with mAP and mINP on the full filtered list.
public func evaluateCUHK03Classic(
    query: FeatureSet, gallery: FeatureSet, options: EvalOptions = EvalOptions(),
    repeats: Int = 10, seed: UInt64 = 0
) throws -> EvalResult {
    try checkEvaluable(query: query, gallery: gallery, options: options)
    guard repeats >= 1 else { throw EvalError("evaluation: repeats must be at least 1, got \(repeats)") }
    let ng = gallery.count
    let maxRank = options.maxRank
    var perQuery = [CUHK03QueryScore](repeating: CUHK03QueryScore(), count: query.count)
    perQuery.withUnsafeMutableBufferPointer { sp in
        let out = SharedBuffer(base: sp.baseAddress!)
        gallery.pids.withUnsafeBufferPointer { pidsBuffer in
            gallery.camids.withUnsafeBufferPointer { camsBuffer in
                let pids = SharedBuffer(base: UnsafeMutablePointer(mutating: pidsBuffer.baseAddress!))
                let cams = SharedBuffer(base: UnsafeMutablePointer(mutating: camsBuffer.baseAddress!))
                forEachQueryDistances(query: query, gallery: gallery, options: options,
                                      makeScratch: { CUHK03Scratch() }) { scratch, q, d in
                    var rng = SplitMix64(seed: seed ^ (UInt64(q) &* 0xD1B5_4A32_D192_ED03))
                    out[q] = scoreCUHK03Query(distances: d, galleryCount: ng, queryPid: query.pids[q],
                                              queryCam: query.camids[q], galleryPids: pids.base,
                                              galleryCams: cams.base, repeats: repeats, rng: &rng,
                                              scratch: &scratch)
                }
            }
        }
    }
    var histogram = [Int](repeating: 0, count: maxRank + 1)
    for p in perQuery where p.score.valid {
        for r in p.shotRanks { histogram[min(r, maxRank)] += 1 }
    }
    return try reduce(perQuery.map(\.score), firstHitCounts: histogram, drawsPerQuery: repeats, maxRank: maxRank,
                      numGallery: ng)
}
