// MARK: - Market-1501 protocol (torchreid `eval_market1501`)
//
// For each query: rank the gallery by distance (ties: stable by gallery index),
// drop the entries with the same pid AND the same camera, skip the query if no
// match remains; CMC = cumulative hit indicator; AP = mean precision at each hit;
// INP = (number of matches) / (1-based rank of the last match).
//
// No full sort is needed: a match's rank in the filtered list is the number of
// gallery items ordered before it (one vectorised counting pass over the distance
// row per same-identity item, tiled so the row is read once) minus the dropped
// items before it. That costs
// O(S x G) per query for S same-identity gallery items, against O(G log G) for a
// sort, and touches no memory beyond the distance row.

/// Gallery indices grouped by identity (ascending within each identity).
struct GalleryIndex: Sendable {
    let byPid: [Int64: [Int32]]
    init(_ pids: [Int64]) {
        var d: [Int64: [Int32]] = [:]
        for (i, p) in pids.enumerated() { d[p, default: []].append(Int32(i)) }
        byPid = d
    }
}

/// Number of gallery items in d[start ..< end] that come before item `s` in the
/// stable order (distance, index): those left of s with d <= d[s], those right of
/// s with d < d[s]; s itself does not count.
@inline(__always)
func itemsBefore(_ d: UnsafePointer<Float>, _ start: Int, _ end: Int, item s: Int, threshold t: Float) -> Int32 {
    var n: Int32 = 0
    let leftEnd = min(max(s, start), end)
    var i = start
    while i < leftEnd { n &+= d[i] <= t ? 1 : 0; i &+= 1 }
    i = max(leftEnd, min(s &+ 1, end))
    while i < end { n &+= d[i] < t ? 1 : 0; i &+= 1 }
    return n
}

/// Gallery items counted a tile at a time, so a long distance row is read from
/// memory once and each tile is scanned for every same-identity item while in L1.
let rankingTile = 4096

/// A same-identity gallery item of one query: its gallery index, its position in
/// the unfiltered stable order, and whether the protocol drops it (same camera).
struct SameIdentityItem { var index: Int; var before: Int; var dropped: Bool }

/// Fills `before` of every item: the number of gallery items before it.
func countItemsBefore(_ d: UnsafePointer<Float>, galleryCount g: Int, items: inout [SameIdentityItem]) {
    for k in items.indices { items[k].before = 0 }
    var start = 0
    while start < g {
        let end = min(start &+ rankingTile, g)
        for k in items.indices {
            let s = items[k].index
            items[k].before &+= Int(itemsBefore(d, start, end, item: s, threshold: d[s]))
        }
        start = end
    }
}

/// Scores one query given its distance row (see the note at the top of the file).
func scoreMarketQuery(
    distances d: UnsafePointer<Float>, galleryCount g: Int, queryCam: Int64,
    sameIdentity: [Int32], galleryCams: UnsafePointer<Int64>, scratch items: inout [SameIdentityItem]
) -> QueryScore {
    items.removeAll(keepingCapacity: true)
    var anyMatch = false
    for s32 in sameIdentity {
        let s = Int(s32)
        let dropped = galleryCams[s] == queryCam
        anyMatch = anyMatch || !dropped
        items.append(SameIdentityItem(index: s, before: 0, dropped: dropped))
    }
    guard anyMatch else { return QueryScore() }
    countItemsBefore(d, galleryCount: g, items: &items)
    items.sort { $0.before < $1.before }
    var droppedSoFar = 0, hits = 0, first = -1, last = 0
    var precisionSum = 0.0
    for item in items {
        if item.dropped { droppedSoFar += 1; continue }
        let rank = item.before - droppedSoFar  // 0-based position in the filtered list
        hits += 1
        precisionSum += Double(hits) / Double(rank + 1)
        if first < 0 { first = rank }
        last = rank
    }
    return QueryScore(valid: true, ap: precisionSum / Double(hits), inp: Double(hits) / Double(last + 1),
                      firstHit: first)
}

/// Market-1501 / DukeMTMC-reID / CUHK03 (767/700) evaluation, as torchreid's
/// `eval_market1501` with mINP. Throws if the sets are empty, not finite, of
/// different dimensions, or if no query is valid.
public func evaluateMarket(query: FeatureSet, gallery: FeatureSet, options: EvalOptions = EvalOptions()) throws -> EvalResult {
    try checkEvaluable(query: query, gallery: gallery, options: options)
    let ng = gallery.count
    let maxRank = options.maxRank
    let index = GalleryIndex(gallery.pids)
    var scores = [QueryScore](repeating: QueryScore(), count: query.count)
    scores.withUnsafeMutableBufferPointer { sp in
        let out = SharedBuffer(base: sp.baseAddress!)
        gallery.camids.withUnsafeBufferPointer { camsBuffer in
            let cams = SharedBuffer(base: UnsafeMutablePointer(mutating: camsBuffer.baseAddress!))
            forEachQueryDistances(query: query, gallery: gallery, options: options,
                                  makeScratch: { [SameIdentityItem]() }) { scratch, q, d in
                let same = index.byPid[query.pids[q]] ?? []
                out[q] = scoreMarketQuery(distances: d, galleryCount: ng, queryCam: query.camids[q],
                                          sameIdentity: same, galleryCams: cams.base, scratch: &scratch)
            }
        }
    }
    var histogram = [Int](repeating: 0, count: maxRank + 1)
    for s in scores where s.valid { histogram[min(s.firstHit, maxRank)] += 1 }
    return try reduce(scores, firstHitCounts: histogram, drawsPerQuery: 1, maxRank: maxRank, numGallery: ng)
}

/// The checks every protocol makes before ranking.
func checkEvaluable(query: FeatureSet, gallery: FeatureSet, options: EvalOptions) throws {
    guard query.count > 0 else { throw EvalError("evaluation: the query set is empty") }
    guard gallery.count > 0 else { throw EvalError("evaluation: the gallery is empty") }
    guard query.dim == gallery.dim else {
        throw EvalError("evaluation: query features have dimension \(query.dim) but gallery features have \(gallery.dim)")
    }
    guard options.maxRank >= 1 else { throw EvalError("evaluation: max rank must be at least 1, got \(options.maxRank)") }
    try query.checkFinite(name: "query")
    try gallery.checkFinite(name: "gallery")
}
