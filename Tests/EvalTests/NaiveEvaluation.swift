// A second, deliberately naive implementation of the protocols (double loops, a
// full stable sort per query, torchreid's cumsum formulation) that the product is
// checked against on random data.
import ReIDEval
import TestSupport

/// Exact squared distances in Double: [nq][ng].
func naiveDistances(_ q: FeatureSet, _ g: FeatureSet) -> [[Double]] {
    (0..<q.count).map { i in
        (0..<g.count).map { j in
            var s = 0.0
            for k in 0..<q.dim {
                let d = Double(q.features[i * q.dim + k]) - Double(g.features[j * g.dim + k])
                s += d * d
            }
            return s
        }
    }
}

/// Stable argsort of one row.
func naiveOrder(_ row: [Double]) -> [Int] {
    Array(0..<row.count).sorted { a, b in row[a] < row[b] || (row[a] == row[b] && a < b) }
}

/// torchreid's eval_market1501 (+ mINP), transcribed loop by loop.
func naiveMarket(_ q: FeatureSet, _ g: FeatureSet, maxRank: Int = 50) -> (cmc: [Double], mAP: Double, mINP: Double, valid: Int) {
    let dist = naiveDistances(q, g)
    var cmcSum = [Double](repeating: 0, count: maxRank)
    var aps: [Double] = [], inps: [Double] = []
    for i in 0..<q.count {
        let order = naiveOrder(dist[i])
        var raw: [Int] = []
        for j in order where !(g.pids[j] == q.pids[i] && g.camids[j] == q.camids[i]) {
            raw.append(g.pids[j] == q.pids[i] ? 1 : 0)
        }
        if !raw.contains(1) { continue }
        var cum = [Int](), run = 0
        for r in raw { run += r; cum.append(run) }
        let maxPos = raw.lastIndex(of: 1)!
        inps.append(Double(cum[maxPos]) / Double(maxPos + 1))
        for k in 0..<maxRank { cmcSum[k] += k < cum.count ? (cum[k] >= 1 ? 1 : 0) : 1 }
        var ap = 0.0
        for (k, r) in raw.enumerated() where r == 1 { ap += Double(cum[k]) / Double(k + 1) }
        aps.append(ap / Double(run))
    }
    let n = Double(aps.count)
    return (cmcSum.map { $0 / n }, aps.reduce(0, +) / n, inps.reduce(0, +) / n, aps.count)
}

/// torchreid's eval_cuhk03 with the product's documented draw order: one SplitMix64
/// stream per query seeded with seed ^ (q * 0xD1B54A32D192ED03), identities in order
/// of first appearance, one draw `next() % count` per identity per repeat.
func naiveCUHK03(_ q: FeatureSet, _ g: FeatureSet, maxRank: Int = 50, repeats: Int = 10, seed: UInt64 = 0)
    -> (cmc: [Double], mAP: Double, valid: Int)
{
    let dist = naiveDistances(q, g)
    var cmcSum = [Double](repeating: 0, count: maxRank)
    var aps: [Double] = []
    for i in 0..<q.count {
        let order = naiveOrder(dist[i])
        let kept = order.filter { !(g.pids[$0] == q.pids[i] && g.camids[$0] == q.camids[i]) }
        let raw = kept.map { g.pids[$0] == q.pids[i] ? 1 : 0 }
        if !raw.contains(1) { continue }
        var groups: [(pid: Int64, positions: [Int])] = []
        for (pos, j) in kept.enumerated() {
            if let k = groups.firstIndex(where: { $0.pid == g.pids[j] }) { groups[k].positions.append(pos) }
            else { groups.append((g.pids[j], [pos])) }
        }
        var rng = SplitMix64(seed: seed ^ (UInt64(i) &* 0xD1B5_4A32_D192_ED03))
        var cmc = [Double](repeating: 0, count: maxRank)
        for _ in 0..<repeats {
            var mask = [Bool](repeating: false, count: raw.count)
            for grp in groups { mask[grp.positions[Int(rng.next() % UInt64(grp.positions.count))]] = true }
            let masked = raw.indices.filter { mask[$0] }.map { raw[$0] }
            var run = 0
            for k in 0..<maxRank {
                if k < masked.count { run += masked[k] }
                cmc[k] += (k < masked.count ? (run >= 1 ? 1 : 0) : 1)
            }
        }
        for k in 0..<maxRank { cmcSum[k] += cmc[k] / Double(repeats) }
        var ap = 0.0, run = 0
        for (k, r) in raw.enumerated() { run += r; if r == 1 { ap += Double(run) / Double(k + 1) } }
        aps.append(ap / Double(run))
    }
    let n = Double(aps.count)
    return (cmcSum.map { $0 / n }, aps.reduce(0, +) / n, aps.count)
}
