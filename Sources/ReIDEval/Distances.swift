import Foundation
import Kernels

// MARK: - Squared Euclidean distances, a block of queries at a time

/// Squared norms of each row of a row-major [rows, dim] matrix.
func rowSquaredNorms(_ x: [Float], rows: Int, dim: Int) -> [Float] {
    var out = [Float](repeating: 0, count: rows)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                let row = xp.baseAddress! + r &* dim
                var s: Float = 0
                for k in 0..<dim { s += row[k] * row[k] }
                o[r] = s
            }
        }
    }
    return out
}

/// Fills `out` [rows, G] with the squared distances between query rows
/// `first ..< first + rows` and every gallery row, as torchreid does:
/// |q|^2 + |g|^2 - 2 q.g, the cross term by one sgemm (`addmm`).
///
/// Squared distances rank exactly like distances, so no square root is taken.
func squaredDistanceBlock(
    query: UnsafePointer<Float>, queryNorms: UnsafePointer<Float>, first: Int, rows: Int,
    gallery: UnsafePointer<Float>, galleryNorms: UnsafePointer<Float>, galleryCount g: Int,
    dim: Int, out: UnsafeMutablePointer<Float>
) {
    for i in 0..<rows {
        let qn = queryNorms[first &+ i]
        let row = out + i &* g
        for j in 0..<g { row[j] = qn + galleryNorms[j] }
    }
    sgemm(transA: false, transB: true, m: rows, n: g, k: dim,
          alpha: -2, a: query + first &* dim, lda: dim, b: gallery, ldb: dim,
          beta: 1, c: out, ldc: g)
}

/// How features are compared: torchreid's two metrics.
public enum DistanceMetric: String, Sendable, CaseIterable {
    /// Squared Euclidean |q - g|^2 (ranks like the Euclidean distance).
    case euclidean
    /// 1 - cos(q, g); the features are L2-normalised first (see `EvalOptions.prepared`).
    case cosine
}

/// `squaredDistanceBlock` for `.euclidean`; for `.cosine` (rows already unit
/// length, norms unused) 1 - q.g, again by one sgemm.
func distanceBlock(
    metric: DistanceMetric, query: UnsafePointer<Float>, queryNorms: UnsafePointer<Float>, first: Int, rows: Int,
    gallery: UnsafePointer<Float>, galleryNorms: UnsafePointer<Float>, galleryCount g: Int,
    dim: Int, out: UnsafeMutablePointer<Float>
) {
    switch metric {
    case .euclidean:
        squaredDistanceBlock(query: query, queryNorms: queryNorms, first: first, rows: rows, gallery: gallery,
                             galleryNorms: galleryNorms, galleryCount: g, dim: dim, out: out)
    case .cosine:
        out.initialize(repeating: 1, count: rows * g)
        sgemm(transA: false, transB: true, m: rows, n: g, k: dim,
              alpha: -1, a: query + first &* dim, lda: dim, b: gallery, ldb: dim,
              beta: 1, c: out, ldc: g)
    }
}

/// Rows scaled to unit L2 norm (torch's `F.normalize`: a zero row stays zero).
public func l2Normalized(_ set: FeatureSet) -> FeatureSet {
    var out = set
    let dim = set.dim
    out.features.withUnsafeMutableBufferPointer { f in
        for r in 0..<set.count {
            let row = f.baseAddress! + r * dim
            var s: Float = 0
            for k in 0..<dim { s += row[k] * row[k] }
            let scale = 1 / max(s.squareRoot(), 1e-12)
            for k in 0..<dim { row[k] *= scale }
        }
    }
    return out
}

/// The full [Nq, Ng] squared distance matrix (for small sets and tests; the
/// evaluations themselves work block by block).
public func squaredDistances(query: FeatureSet, gallery: FeatureSet) -> [Float] {
    precondition(query.dim == gallery.dim, "squaredDistances: query dim \(query.dim) != gallery dim \(gallery.dim)")
    let nq = query.count, ng = gallery.count
    var out = [Float](repeating: 0, count: nq * ng)
    guard nq > 0, ng > 0 else { return out }
    let qn = rowSquaredNorms(query.features, rows: nq, dim: query.dim)
    let gn = rowSquaredNorms(gallery.features, rows: ng, dim: gallery.dim)
    query.features.withUnsafeBufferPointer { q in
        gallery.features.withUnsafeBufferPointer { gp in
            qn.withUnsafeBufferPointer { qnp in
                gn.withUnsafeBufferPointer { gnp in
                    out.withUnsafeMutableBufferPointer { o in
                        squaredDistanceBlock(query: q.baseAddress!, queryNorms: qnp.baseAddress!, first: 0, rows: nq,
                                             gallery: gp.baseAddress!, galleryNorms: gnp.baseAddress!, galleryCount: ng,
                                             dim: query.dim, out: o.baseAddress!)
                    }
                }
            }
        }
    }
    return out
}

// MARK: - Block driver: distances of a block, then its queries ranked in parallel

/// How an evaluation walks the distance matrix.
public struct EvalOptions: Sendable {
    /// CMC is kept for ranks 1...maxRank (torchreid's max_rank). Ranks past the gallery size
    /// hold the value at the gallery size (torchreid clips max_rank instead).
    public var maxRank: Int
    /// Threads that rank the queries of a block, by default all cores (the GEMM uses the kernels' threads, set
    /// with `setComputeThreads`; the two never run at the same time).
    public var threads: Int
    /// Queries per distance block; nil picks 2^26 / gallery (at least 1), so a block
    /// holds at most 256 MiB of distances however large the gallery. Larger blocks
    /// mean fewer GEMM calls, each re-packing the whole gallery.
    public var blockRows: Int?
    /// If given, receives the time spent on distances (GEMM) and on ranking.
    public var profile: EvalProfile?
    /// Squared Euclidean (default) or cosine distance.
    public var distance: DistanceMetric
    /// L2-normalise the features first (implied by `.cosine`).
    public var normalize: Bool
    /// k-reciprocal re-ranking of the distances, if given.
    public var rerank: RerankParameters?

    public init(maxRank: Int = 50, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                blockRows: Int? = nil, profile: EvalProfile? = nil, distance: DistanceMetric = .euclidean,
                normalize: Bool = false, rerank: RerankParameters? = nil) {
        self.maxRank = maxRank
        self.threads = threads
        self.blockRows = blockRows
        self.profile = profile
        self.distance = distance
        self.normalize = normalize
        self.rerank = rerank
    }

    /// The sets as the distances see them: L2-normalised for `normalize` or `.cosine`.
    func prepared(_ query: FeatureSet, _ gallery: FeatureSet) -> (FeatureSet, FeatureSet) {
        guard normalize || distance == .cosine else { return (query, gallery) }
        return (l2Normalized(query), l2Normalized(gallery))
    }

    func rows(forGallery g: Int) -> Int {
        if let b = blockRows { return max(1, b) }
        return max(1, (1 << 26) / max(g, 1))
    }
}

/// Wall-clock seconds spent in the phases of an evaluation (accumulated).
public final class EvalProfile: @unchecked Sendable {
    public var distanceSeconds = 0.0
    public var rankingSeconds = 0.0
    /// Re-ranking's preparation (the N x N neighbours, V, query expansion); its
    /// per-query Jaccard rows count as ranking.
    public var rerankSeconds = 0.0
    public init() {}
}

/// Monotonic seconds (for timings and progress lines).
public func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) * 1e-9 }

/// Memory written by several threads at distinct indices.
struct SharedBuffer<T>: @unchecked Sendable {
    let base: UnsafeMutablePointer<T>
    subscript(i: Int) -> T {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }
}

/// Calls `body(worker, queryIndex, distances)` once per query with that query's
/// distances to the whole gallery (a row of length gallery.count, valid only
/// during the call): squared Euclidean or cosine by `options.distance`, on
/// normalised features if asked, re-ranked if `options.rerank` is set. Distances are computed `blockRows` queries at a time by one
/// GEMM; the block's queries are then shared among `threads` workers; each worker
/// gets its own `makeScratch()` value. Memory is O(blockRows x gallery).
func forEachQueryDistances<Scratch>(
    query: FeatureSet, gallery: FeatureSet, options: EvalOptions,
    makeScratch: () -> Scratch,
    body: @escaping @Sendable (_ scratch: inout Scratch, _ query: Int, _ distances: UnsafePointer<Float>) -> Void
) {
    precondition(query.dim == gallery.dim, "query dim \(query.dim) != gallery dim \(gallery.dim)")
    let (query, gallery) = options.prepared(query, gallery)
    let nq = query.count, ng = gallery.count, dim = query.dim
    let rows = min(options.rows(forGallery: ng), max(nq, 1))
    let threads = max(1, options.threads)
    let t0 = monotonicSeconds()
    let reranker = options.rerank.map {
        KReciprocalReranker(query: query, gallery: gallery, metric: options.distance, parameters: $0,
                            threads: threads, blockRows: options.blockRows)
    }
    options.profile?.rerankSeconds += monotonicSeconds() - t0
    // Per worker: the re-ranked row and the Jaccard overlaps.
    let rerankRows = UnsafeMutablePointer<Float>.allocate(capacity: reranker == nil ? 0 : threads * 2 * ng)
    defer { rerankRows.deallocate() }
    let rerankScratch = SharedBuffer(base: rerankRows)
    let qn = rowSquaredNorms(query.features, rows: nq, dim: dim)
    let gn = rowSquaredNorms(gallery.features, rows: ng, dim: dim)
    let block = UnsafeMutablePointer<Float>.allocate(capacity: options.rerank == nil ? rows * ng : 0)
    defer { block.deallocate() }
    var scratches = (0..<threads).map { _ in makeScratch() }
    query.features.withUnsafeBufferPointer { q in
        gallery.features.withUnsafeBufferPointer { gp in
            qn.withUnsafeBufferPointer { qnp in
                gn.withUnsafeBufferPointer { gnp in
                    scratches.withUnsafeMutableBufferPointer { sp in
                        let scratch = SharedBuffer(base: sp.baseAddress!)
                        let distances = SharedBuffer(base: block)
                        var first = 0
                        while first < nq {
                            let count = min(rows, nq - first)
                            let t0 = monotonicSeconds()
                            if reranker == nil {  // (re-ranking kept these distances from its own search)
                                distanceBlock(metric: options.distance, query: q.baseAddress!, queryNorms: qnp.baseAddress!,
                                              first: first, rows: count, gallery: gp.baseAddress!,
                                              galleryNorms: gnp.baseAddress!, galleryCount: ng, dim: dim, out: block)
                            }
                            let t1 = monotonicSeconds()
                            let start = first
                            let work: @Sendable (Int) -> Void = { w in
                                var i = w
                                while i < count {
                                    var row = UnsafePointer(distances.base + i * ng)
                                    if let reranker {
                                        let out = rerankScratch.base + w * 2 * ng
                                        reranker.rerankedRow(query: start + i, distances: reranker.distances(query: start + i),
                                                             into: out, overlap: out + ng)
                                        row = UnsafePointer(out)
                                    }
                                    body(&scratch.base[w], start + i, row)
                                    i += threads
                                }
                            }
                            if threads == 1 { work(0) } else { DispatchQueueShim.concurrentPerform(threads, work) }
                            if let p = options.profile {
                                p.distanceSeconds += t1 - t0
                                p.rankingSeconds += monotonicSeconds() - t1
                            }
                            first += count
                        }
                    }
                }
            }
        }
    }
}
