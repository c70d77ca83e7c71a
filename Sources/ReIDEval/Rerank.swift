import Foundation
import Kernels

// MARK: - k-reciprocal re-ranking (Zhong et al., CVPR 2017), as torchreid's `re_ranking`
//
// torchreid builds several dense (query + gallery)^2 matrices (distances, their
// argsort, V, V after query expansion): about 10 GB at Market size. Only a few
// things are ever read from them, so this keeps just those:
//  - per row of all N = Nq + Ng images: its k1 + 1 nearest (stable order of d^2)
//    and the row maximum of d^2 (torchreid's column normalisation), from one
//    blocked GEMM over all N x N distances (a block of rows at a time);
//  - V as sparse rows: row i has weights only on its k-reciprocal expansion set
//    (tens of entries), whose distances are recomputed as dot products;
//  - V after query expansion (mean of the k2 nearest rows' V), sparse;
//  - the gallery rows of V by column (torchreid's `invIndex`), for the Jaccard sums.
// A query's re-ranked gallery row is then computed from its ordinary distance
// row when the evaluation reaches it. Memory is O(N x (k1 + |V rows|)) plus the
// GEMM block; time is dominated by the N x N x E GEMM.
//
// As in torchreid, the distances d fed in are those of the evaluation: squared
// Euclidean, or 1 - cosine; "original_dist" is d^2 / (its row maximum).

/// k-reciprocal re-ranking parameters (torchreid defaults).
public struct RerankParameters: Sendable, Equatable {
    /// Neighbours for the k-reciprocal sets (k1 + 1 nearest, self included).
    public var k1: Int
    /// Neighbours averaged by query expansion (1 = no expansion).
    public var k2: Int
    /// Weight of the original distance; 1 - lambda is the Jaccard distance's.
    public var lambda: Float
    public init(k1: Int = 20, k2: Int = 6, lambda: Float = 0.3) {
        self.k1 = k1; self.k2 = k2; self.lambda = lambda
    }

    /// One clear error for out-of-range values.
    public func check() throws {
        guard k1 >= 1 else { throw EvalError("re-ranking: k1 must be at least 1, got \(k1)") }
        guard k2 >= 1 else { throw EvalError("re-ranking: k2 must be at least 1, got \(k2)") }
        guard lambda >= 0, lambda <= 1 else { throw EvalError("re-ranking: lambda must be in 0...1, got \(lambda)") }
    }
}

/// A sparse row: column indices and values.
struct SparseRow: Sendable {
    var index: [Int32] = []
    var value: [Float] = []
}

/// The state re-ranking needs for scoring the queries (see the note at the top).
final class KReciprocalReranker: @unchecked Sendable {
    let queryCount: Int, galleryCount: Int
    let lambda: Float
    /// max_j d(q, j)^2 over all N images, for each query row.
    let queryRowMax: [Float]
    /// V after query expansion, query rows.
    let queryV: [SparseRow]
    /// The gallery rows of V after query expansion, by column k: gallery indices and values.
    let columnStart: [Int], columnRow: [Int32], columnValue: [Float]
    /// The query x gallery distances, kept from the neighbour search so the
    /// evaluation need not compute them again ([Nq, Ng], 266 MB at Market size).
    let queryGallery: UnsafeMutablePointer<Float>

    deinit { queryGallery.deallocate() }

    /// Query q's distances to the gallery (as `distanceBlock` gives them).
    func distances(query q: Int) -> UnsafePointer<Float> { UnsafePointer(queryGallery + q * galleryCount) }

    init(query: FeatureSet, gallery: FeatureSet, metric: DistanceMetric, parameters p: RerankParameters,
         threads: Int, blockRows: Int?) {
        let nq = query.count, ng = gallery.count, n = nq + ng, dim = query.dim
        queryCount = nq; galleryCount = ng; lambda = p.lambda
        let all = query.features + gallery.features
        let norms = rowSquaredNorms(all, rows: n, dim: dim)
        let threads = max(1, threads)

        // 1. The k1 + 1 nearest of every row and each row's maximum of d^2. The
        //    distance matrix is symmetric, so only the blocks on and above the
        //    diagonal are computed (half the GEMM): a block (I, J) updates the rows
        //    of I from its rows and, off the diagonal, the rows of J from its columns.
        let k = min(p.k1 + 1, n)
        var nearestValue = [Float](repeating: .infinity, count: n * k)
        var nearest = [Int32](repeating: Int32.max, count: n * k)
        var rowMax = [Float](repeating: 0, count: n)
        let qg = UnsafeMutablePointer<Float>.allocate(capacity: max(nq * ng, 1))
        queryGallery = qg
        let kept = SharedBuffer(base: qg)
        let side = min(blockRows ?? 4096, n)  // a block of side^2 floats: 64 MiB at most by default
        let block = UnsafeMutablePointer<Float>.allocate(capacity: side * side)
        defer { block.deallocate() }
        all.withUnsafeBufferPointer { x in
            norms.withUnsafeBufferPointer { nn in
                nearest.withUnsafeMutableBufferPointer { top in
                    nearestValue.withUnsafeMutableBufferPointer { topValue in
                        rowMax.withUnsafeMutableBufferPointer { mx in
                            let lists = NearestLists(index: top.baseAddress!, value: topValue.baseAddress!,
                                                     maximum: mx.baseAddress!, k: k)
                            let d = SharedBuffer(base: block)
                            for first in stride(from: 0, to: n, by: side) {
                                let rows = min(side, n - first)
                                for other in stride(from: first, to: n, by: side) {
                                    let cols = min(side, n - other)
                                    distanceBlock(metric: metric, query: x.baseAddress!, queryNorms: nn.baseAddress!,
                                                  first: first, rows: rows, gallery: x.baseAddress! + other * dim,
                                                  galleryNorms: nn.baseAddress! + other, galleryCount: cols, dim: dim,
                                                  out: block)
                                    DispatchQueueShim.concurrentPerform(threads) { w in
                                        var i = w
                                        while i < rows {  // the rows of block I
                                            let row = d.base + i * cols
                                            for c in 0..<cols { lists.offer(first + i, row[c], other + c) }
                                            let q = first + i, from = max(other, nq)  // query x gallery: kept
                                            if q < nq && from < other + cols {
                                                (kept.base + q * ng + (from - nq)).update(from: row + (from - other),
                                                                                   count: other + cols - from)
                                            }
                                            i += threads
                                        }
                                    }
                                    guard other != first else { continue }
                                    DispatchQueueShim.concurrentPerform(threads) { w in
                                        // the rows of block J, a contiguous range of columns per worker
                                        let lo = cols * w / threads, hi = cols * (w + 1) / threads
                                        for r in 0..<rows {
                                            let row = d.base + r * cols
                                            for c in lo..<hi { lists.offer(other + c, row[c], first + r) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        for i in 0..<n where !(rowMax[i] > 0) { rowMax[i] = 1 }  // all distances zero: avoid 0/0
        let maxima = rowMax

        // 2. V: weights exp(-d^2 / max) on each row's k-reciprocal expansion set, summing to 1.
        let halfK = min(Int((Double(p.k1) / 2).rounded(.toNearestOrEven)) + 1, n)  // np.around(k1 / 2.) + 1
        var v = [SparseRow](repeating: SparseRow(), count: n)
        nearest.withUnsafeBufferPointer { topBuffer in
            all.withUnsafeBufferPointer { x in
                v.withUnsafeMutableBufferPointer { vb in
                    let top = SharedBuffer(base: UnsafeMutablePointer(mutating: topBuffer.baseAddress!))
                    let x = SharedBuffer(base: UnsafeMutablePointer(mutating: x.baseAddress!))
                    let out = SharedBuffer(base: vb.baseAddress!)
                    DispatchQueueShim.concurrentPerform(threads) { w in
                        /// The first `m` nearest of `i` that have `i` among their own first `m`, in order.
                        func reciprocal(_ i: Int, _ m: Int) -> [Int32] {
                            var r: [Int32] = []
                            for t in 0..<m {
                                let f = Int(top[i * k + t])
                                for u in 0..<m where top[f * k + u] == Int32(i) { r.append(Int32(f)); break }
                            }
                            return r
                        }
                        var i = w
                        while i < n {
                            let r = reciprocal(i, k)
                            var expansion = r
                            for c in r {
                                let rc = reciprocal(Int(c), halfK)
                                let common = rc.lazy.filter { r.contains($0) }.count
                                if Double(common) > 2.0 / 3.0 * Double(rc.count) { expansion += rc }
                            }
                            let set = Array(Set(expansion)).sorted()
                            var weights = set.map { j -> Float in
                                let dij = pairDistance(metric: metric, x.base, norms, i, Int(j), dim)
                                return exp(-(dij * dij) / maxima[i])
                            }
                            let sum = weights.reduce(0, +)
                            for t in weights.indices { weights[t] /= sum }
                            out[i] = SparseRow(index: set, value: weights)
                            i += threads
                        }
                    }
                }
            }
        }

        // 3. Query expansion: each row becomes the mean of its k2 nearest rows' V.
        if p.k2 != 1 {
            let k2 = min(p.k2, k, n)
            var expanded = [SparseRow](repeating: SparseRow(), count: n)
            nearest.withUnsafeBufferPointer { topBuffer in
                v.withUnsafeBufferPointer { vb in
                    expanded.withUnsafeMutableBufferPointer { eb in
                        let top = SharedBuffer(base: UnsafeMutablePointer(mutating: topBuffer.baseAddress!))
                        let v = SharedBuffer(base: UnsafeMutablePointer(mutating: vb.baseAddress!))
                        let out = SharedBuffer(base: eb.baseAddress!)
                        DispatchQueueShim.concurrentPerform(threads) { w in
                            var acc = [Float](repeating: 0, count: n)
                            var touched: [Int32] = []
                            var i = w
                            while i < n {
                                for t in 0..<k2 {
                                    let row = v[Int(top[i * k + t])]
                                    for (j, value) in zip(row.index, row.value) {
                                        if acc[Int(j)] == 0 { touched.append(j) }
                                        acc[Int(j)] += value
                                    }
                                }
                                touched.sort()
                                out[i] = SparseRow(index: touched, value: touched.map { acc[Int($0)] / Float(k2) })
                                for j in touched { acc[Int(j)] = 0 }
                                touched.removeAll(keepingCapacity: true)
                                i += threads
                            }
                        }
                    }
                }
            }
            v = expanded
        }

        // 4. The gallery rows of V by column, for the Jaccard sums of the queries.
        var start = [Int](repeating: 0, count: n + 1)
        for j in 0..<ng { for c in v[nq + j].index { start[Int(c) + 1] += 1 } }
        for c in 0..<n { start[c + 1] += start[c] }
        var fill = start
        var colRow = [Int32](repeating: 0, count: start[n]), colValue = [Float](repeating: 0, count: start[n])
        for j in 0..<ng {
            let row = v[nq + j]
            for (c, value) in zip(row.index, row.value) {
                colRow[fill[Int(c)]] = Int32(j); colValue[fill[Int(c)]] = value; fill[Int(c)] += 1
            }
        }
        columnStart = start; columnRow = colRow; columnValue = colValue
        queryRowMax = Array(rowMax[0..<nq])
        queryV = Array(v[0..<nq])
    }

    /// Query q's re-ranked distances to the gallery, from its distance row `d`
    /// (the same metric as the constructor's): (1 - lambda) * Jaccard + lambda * d^2 / max.
    /// `overlap` is scratch of `galleryCount` floats.
    func rerankedRow(query q: Int, distances d: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                     overlap: UnsafeMutablePointer<Float>) {
        let ng = galleryCount
        overlap.initialize(repeating: 0, count: ng)
        let row = queryV[q]
        columnStart.withUnsafeBufferPointer { start in
            columnRow.withUnsafeBufferPointer { rows in
                columnValue.withUnsafeBufferPointer { values in
                    for (c, vq) in zip(row.index, row.value) {
                        for e in start[Int(c)]..<start[Int(c) + 1] {
                            overlap[Int(rows[e])] += min(vq, values[e])
                        }
                    }
                }
            }
        }
        let scale = 1 / queryRowMax[q], l = lambda
        for j in 0..<ng {
            let m = overlap[j]
            let jaccard = 1 - m / (2 - m)
            out[j] = jaccard * (1 - l) + (d[j] * d[j] * scale) * l
        }
    }
}

/// Every row's k nearest so far, ascending in (d^2, index) — numpy's argsort
/// order with ties by index — and its maximum of d^2. Rows are updated by one
/// worker at a time.
struct NearestLists: @unchecked Sendable {
    let index: UnsafeMutablePointer<Int32>
    let value: UnsafeMutablePointer<Float>
    let maximum: UnsafeMutablePointer<Float>
    let k: Int

    /// Offers item j at distance d to row r's list.
    @inline(__always)
    func offer(_ r: Int, _ d: Float, _ j: Int) {
        let v = d * d, j32 = Int32(j)
        if v > maximum[r] { maximum[r] = v }
        let base = r &* k
        let lastValue = value[base &+ k &- 1]
        guard v < lastValue || (v == lastValue && j32 < index[base &+ k &- 1]) else { return }
        var at = k &- 1
        while at > 0 {
            let pv = value[base &+ at &- 1]
            guard v < pv || (v == pv && j32 < index[base &+ at &- 1]) else { break }
            value[base &+ at] = pv
            index[base &+ at] = index[base &+ at &- 1]
            at &-= 1
        }
        value[base &+ at] = v
        index[base &+ at] = j32
    }
}

/// d(i, j) between rows of `x`, by the same formula as `distanceBlock`.
@inline(__always)
func pairDistance(metric: DistanceMetric, _ x: UnsafeMutablePointer<Float>, _ norms: [Float], _ i: Int, _ j: Int,
                  _ dim: Int) -> Float {
    let a = x + i * dim, b = x + j * dim
    var s0 = SIMD8<Float>(), s1 = SIMD8<Float>()
    var t = 0
    while t + 16 <= dim {
        s0 += UnsafeRawPointer(a + t).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + t).loadUnaligned(as: SIMD8<Float>.self)
        s1 += UnsafeRawPointer(a + t + 8).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + t + 8).loadUnaligned(as: SIMD8<Float>.self)
        t += 16
    }
    var dot = (s0 + s1).sum()
    while t < dim { dot += a[t] * b[t]; t += 1 }
    switch metric {
    case .euclidean: return norms[i] + norms[j] - 2 * dot
    case .cosine: return 1 - dot
    }
}
