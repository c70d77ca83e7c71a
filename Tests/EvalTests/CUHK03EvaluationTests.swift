import ReIDEval
import Testing
import TestSupport

@Suite struct CUHK03EvaluationTests {
    /// Identity 2 has two images, both nearer than the match: one of them is kept in
    /// every draw, so the match is always second (Market would put it third).
    @Test func singleGalleryShotKeepsOneImagePerIdentity() throws {
        let q = try line([0], pids: [1], cams: [0])
        let g = try line([1, 2, 3, 4], pids: [2, 2, 1, 3], cams: [1, 1, 1, 1])
        let r = try evaluateCUHK03Classic(query: q, gallery: g, options: EvalOptions(maxRank: 4))
        #expect(r.cmc == [0, 1, 1, 1])  // max rank 4 = gallery size
        let market = try evaluateMarket(query: q, gallery: g, options: EvalOptions(maxRank: 4))
        #expect(market.cmc == [0, 0, 1, 1])
        // AP is the Market AP on the whole filtered list: one hit at rank 3.
        #expect(close(r.mAP, 1.0 / 3) && close(r.mAP, market.mAP))
    }

    /// The match has two images (distances 1 and 9) around another identity (4):
    /// rank-1 is a hit exactly when the near image is drawn; over 200 queries x 10
    /// draws the rate is close to one half, and every draw is a hit by rank 2.
    @Test func drawsAverageOverRepeats() throws {
        let n = 200
        let q = try line([Float](repeating: 0, count: n), pids: [Int64](repeating: 1, count: n),
                         cams: [Int64](repeating: 0, count: n))
        let g = try line([1, 2, 3], pids: [1, 2, 1], cams: [1, 1, 2])
        let r = try evaluateCUHK03Classic(query: q, gallery: g, seed: 5)
        #expect(r.cmc[0] > 0.45 && r.cmc[0] < 0.55)
        #expect(r.cmc[1] == 1)
        // A single query's rank-1 is a multiple of 1/10 (ten draws).
        let one = try evaluateCUHK03Classic(query: try line([0], pids: [1], cams: [0]), gallery: g, seed: 5)
        #expect(abs(one.cmc[0] * 10 - (one.cmc[0] * 10).rounded()) < 1e-9)
        // Same seed, same numbers; the thread count does not matter.
        let again = try evaluateCUHK03Classic(query: q, gallery: g, options: EvalOptions(threads: 1, blockRows: 3), seed: 5)
        #expect(again == r)
    }

    @Test(arguments: [11 as UInt64, 12])
    func randomDataMatchesNaive(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let q = try randomSet(50, dim: 4, ids: 10, cams: 2, integer: true, rng: &rng)
        let g = try randomSet(300, dim: 4, ids: 10, cams: 2, integer: true, rng: &rng)
        let expected = naiveCUHK03(q, g, maxRank: 20, seed: seed)
        let r = try evaluateCUHK03Classic(query: q, gallery: g, options: EvalOptions(maxRank: 20, blockRows: 9), seed: seed)
        #expect(r.numValidQuery == expected.valid)
        #expect(close(r.cmc, expected.cmc, 1e-9))
        #expect(close(r.mAP, expected.mAP))
        #expect(close(r.mAP, naiveMarket(q, g).mAP))
    }
}
