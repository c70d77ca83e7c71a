import Foundation
import ReIDEval
import Testing
import TestSupport

@Suite struct MarketEvaluationTests {
    // MARK: Hand-worked cases (1-D features, query at 0: distance = x^2)

    /// Ranked: g0 (pid 1, same camera: dropped), g1 distractor, g2 match, g3 other, g4 match
    /// -> filtered hits [0, 1, 0, 1]: rank-1 0, rank-2 1, AP (1/2 + 2/4) / 2, INP 2/4.
    @Test func sameCameraExclusionAndDistractor() throws {
        let q = try line([0], pids: [1], cams: [1])
        let g = try line([1, 2, 3, 4, 5], pids: [1, 0, 1, 5, 1], cams: [1, 2, 2, 1, 3])
        let r = try evaluateMarket(query: q, gallery: g)
        #expect(r.cmc.count == 50)  // ranks past the gallery size hold the final value
        #expect(r.cmc == [0] + [Double](repeating: 1, count: 49))
        #expect(close(r.mAP, 0.5))
        #expect(close(r.mINP, 0.5))
        #expect(r.numQuery == 1 && r.numGallery == 5 && r.numValidQuery == 1)
    }

    /// The same-identity, same-camera item must be dropped, not merely ranked:
    /// here it is the nearest, and rank-1 must still be a miss.
    @Test func droppedItemDoesNotCountAsHitOrAsMiss() throws {
        let q = try line([0], pids: [7], cams: [2])
        let g = try line([0.5, 1, 2], pids: [7, 3, 7], cams: [2, 1, 1])
        let r = try evaluateMarket(query: q, gallery: g)
        // filtered: [g1 miss, g2 hit] -> AP 1/2, INP 1/2
        #expect(r.cmc.prefix(3) == [0, 1, 1])
        #expect(close(r.mAP, 0.5) && close(r.mINP, 0.5))
    }

    /// Equal distances are ordered by gallery index (a stable argsort).
    @Test func tiesFollowGalleryIndex() throws {
        let q = try line([0], pids: [1], cams: [1])
        // g0 (other id) and g1, g2 (matches) all at distance 1: order g0, g1, g2 -> [0, 1, 1]
        let a = try evaluateMarket(query: q, gallery: try line([1, 1, -1], pids: [2, 1, 1], cams: [2, 2, 3]))
        #expect(a.cmc.prefix(3) == [0, 1, 1])
        #expect(close(a.mAP, (1.0 / 2 + 2.0 / 3) / 2))
        #expect(close(a.mINP, 2.0 / 3))
        // the match first by index: [1, 0, 1]
        let b = try evaluateMarket(query: q, gallery: try line([1, 1, -1], pids: [1, 2, 1], cams: [2, 2, 3]))
        #expect(b.cmc.prefix(3) == [1, 1, 1])
        #expect(close(b.mAP, (1.0 + 2.0 / 3) / 2))
        #expect(close(b.mINP, 2.0 / 3))
    }

    /// mINP uses the hardest match: hits [1, 0, 0, 1] -> INP 2/4 although rank-1 is a hit.
    @Test func mINPUsesTheHardestMatch() throws {
        let q = try line([0], pids: [4], cams: [1])
        let g = try line([1, 2, 3, 4], pids: [4, 5, 6, 4], cams: [2, 2, 2, 3])
        let r = try evaluateMarket(query: q, gallery: g)
        #expect(close(r.mINP, 0.5))
        #expect(close(r.mAP, (1.0 + 2.0 / 4) / 2))
        #expect(r.cmc.first == 1)
    }

    /// Queries whose identity is absent, or present only under their own camera, are
    /// skipped: they count in numQuery but not in any average.
    @Test func queriesWithoutMatchesAreSkipped() throws {
        let q = try line([0, 0, 0], pids: [1, 9, 2], cams: [1, 1, 1])
        let g = try line([1, 2, 3], pids: [2, 1, 2], cams: [2, 2, 1])
        // q0 (pid 1): filtered [0, 1, 0] -> first hit rank 2, AP 1/2, INP 1/2
        // q1 (pid 9): absent -> skipped
        // q2 (pid 2): g0 match, g1 miss, g2 same camera dropped -> [1, 0]: rank 1, AP 1, INP 1
        let r = try evaluateMarket(query: q, gallery: g)
        #expect(r.numQuery == 3 && r.numValidQuery == 2)
        #expect(r.cmc.prefix(3) == [0.5, 1, 1])
        #expect(close(r.mAP, 0.75) && close(r.mINP, 0.75))
    }

    @Test func noValidQueryIsAClearError() throws {
        let q = try line([0, 0], pids: [1, 2], cams: [1, 1])
        let g = try line([1, 2], pids: [1, 3], cams: [1, 2])  // pid 1 only under the query's camera
        #expect {
            try evaluateMarket(query: q, gallery: g)
        } throws: { error in
            "\(error)".contains("no valid query")
        }
    }

    @Test func badInputsAreErrors() throws {
        let q = try line([0], pids: [1], cams: [1])
        let g = try line([1], pids: [1], cams: [2])
        let empty = try FeatureSet(features: [], dim: 1, pids: [], camids: [])
        #expect(throws: EvalError.self) { try evaluateMarket(query: q, gallery: empty) }
        #expect(throws: EvalError.self) { try evaluateMarket(query: empty, gallery: g) }
        let wide = try FeatureSet(features: [0, 0], dim: 2, pids: [1], camids: [1])
        #expect(throws: EvalError.self) { try evaluateMarket(query: wide, gallery: g) }
        let nan = try line([.nan], pids: [1], cams: [1])
        #expect { try evaluateMarket(query: nan, gallery: g) } throws: { "\($0)".contains("row 0") }
        #expect(throws: EvalError.self) { try FeatureSet(features: [0, 1], dim: 1, pids: [1], camids: [1, 2]) }
    }

    @Test func maxRankAndJSON() throws {
        let q = try line([0], pids: [1], cams: [1])
        let g = try line([1, 2, 3, 4, 5, 6], pids: [2, 3, 1, 4, 5, 6], cams: [2, 2, 2, 2, 2, 2])
        let r = try evaluateMarket(query: q, gallery: g, options: EvalOptions(maxRank: 4))
        #expect(r.cmc == [0, 0, 1, 1])
        #expect(r.rank(1) == 0 && r.rank(4) == 1 && r.rank(5) == nil)
        let json = r.jsonObject()
        #expect(json["rank1"] as? Double == 0)
        #expect(json["num_valid_query"] as? Int == 1)
        #expect((json["cmc"] as? [Double])?.count == 4)
        #expect(json["rank5"] is NSNull)
    }

    // MARK: Random data against the naive implementation

    /// Integer features: exact distances with many ties, so the tie order is tested too.
    @Test(arguments: [1 as UInt64, 2, 3])
    func randomIntegerFeaturesMatchNaive(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let q = try randomSet(50, dim: 4, ids: 12, cams: 3, integer: true, rng: &rng)
        let g = try randomSet(300, dim: 4, ids: 12, cams: 3, integer: true, rng: &rng)
        let expected = naiveMarket(q, g)
        for options in [EvalOptions(), EvalOptions(threads: 1, blockRows: 7), EvalOptions(threads: 3, blockRows: 16)] {
            let r = try evaluateMarket(query: q, gallery: g, options: options)
            #expect(r.numValidQuery == expected.valid)
            #expect(close(r.cmc, expected.cmc))
            #expect(close(r.mAP, expected.mAP))
            #expect(close(r.mINP, expected.mINP))
        }
        #expect(expected.valid > 30)  // the case is not degenerate
    }

    /// A gallery longer than the ranking tile (4096), with heavy ties across tile edges.
    @Test func galleryLongerThanATileMatchesNaive() throws {
        var rng = SplitMix64(seed: 9)
        let q = try randomSet(20, dim: 3, ids: 40, cams: 3, integer: true, rng: &rng)
        let g = try randomSet(9000, dim: 3, ids: 40, cams: 3, integer: true, rng: &rng)
        let expected = naiveMarket(q, g)
        let r = try evaluateMarket(query: q, gallery: g)
        #expect(r.numValidQuery == expected.valid && expected.valid > 10)
        #expect(close(r.cmc, expected.cmc))
        #expect(close(r.mAP, expected.mAP))
        #expect(close(r.mINP, expected.mINP))
    }

    @Test func randomFloatFeaturesMatchNaive() throws {
        var rng = SplitMix64(seed: 42)
        let q = try randomSet(50, dim: 16, ids: 20, cams: 4, integer: false, rng: &rng)
        let g = try randomSet(300, dim: 16, ids: 20, cams: 4, integer: false, rng: &rng)
        let expected = naiveMarket(q, g, maxRank: 20)
        let r = try evaluateMarket(query: q, gallery: g, options: EvalOptions(maxRank: 20, blockRows: 13))
        #expect(r.numValidQuery == expected.valid)
        #expect(close(r.cmc, expected.cmc))
        #expect(close(r.mAP, expected.mAP))
        #expect(close(r.mINP, expected.mINP))
    }

    /// The GEMM distances agree with direct differences.
    @Test func distancesMatchDirectComputation() throws {
        var rng = SplitMix64(seed: 7)
        let q = try randomSet(9, dim: 33, ids: 3, cams: 2, integer: false, rng: &rng)
        let g = try randomSet(17, dim: 33, ids: 3, cams: 2, integer: false, rng: &rng)
        let d = squaredDistances(query: q, gallery: g)
        let n = naiveDistances(q, g)
        for i in 0..<9 { for j in 0..<17 { #expect(abs(Double(d[i * 17 + j]) - n[i][j]) < 1e-4) } }
    }
}
