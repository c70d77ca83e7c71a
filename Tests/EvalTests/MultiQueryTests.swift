import ReIDEval
import Testing

@Suite struct MultiQueryTests {
    @Test func averagesImagesOfTheSameIdentityAndCamera() throws {
        let q = try FeatureSet(features: [0, 0, 5, 5, 7, 7], dim: 2, pids: [1, 1, 2], camids: [1, 2, 1])
        // pid 1 cam 1: two images; pid 1 cam 2: one; pid 1 cam 3 and pid 3 are never used; pid 2 cam 1: none.
        let mq = try FeatureSet(features: [2, 4, 4, 8, 10, 10, 100, 100, 50, 50], dim: 2,
                                pids: [1, 1, 1, 1, 3], camids: [1, 1, 2, 3, 1])
        let out = try multiQueryAverage(query: q, multiQuery: mq)
        #expect(out.features == [3, 6, 10, 10, 7, 7])
        #expect(out.pids == q.pids && out.camids == q.camids)
    }

    @Test func averagingImprovesANoisyQuery() throws {
        // The single query image is nearer an impostor; its identity's images average onto the match.
        let q = try FeatureSet(features: [0.9], dim: 1, pids: [1], camids: [1])
        let mq = try FeatureSet(features: [0.9, -0.7, 0.1], dim: 1, pids: [1, 1, 1], camids: [1, 1, 1])
        let g = try FeatureSet(features: [0.1, 1.0], dim: 1, pids: [1, 2], camids: [2, 2])
        #expect(try evaluateMarket(query: q, gallery: g).cmc[0] == 0)
        let averaged = try multiQueryAverage(query: q, multiQuery: mq)
        #expect(try evaluateMarket(query: averaged, gallery: g).cmc[0] == 1)
    }

    @Test func evaluateUsesTheFilesMultiQueryGroup() throws {
        let q = try FeatureSet(features: [0.9], dim: 1, pids: [1], camids: [1])
        let mq = try FeatureSet(features: [0.9, -0.7, 0.1], dim: 1, pids: [1, 1, 1], camids: [1, 1, 1])
        let g = try FeatureSet(features: [0.1, 1.0], dim: 1, pids: [1, 2], camids: [2, 2])
        let single = try FeaturesFile(query: q, gallery: g)
        #expect { try evaluate(single, multiQuery: true) } throws: { "\($0)".contains("/multiquery") }
        let multi = try FeaturesFile(query: q, gallery: g, multiQuery: mq)
        #expect(try evaluate(multi).cmc[0] == 0)
        #expect(try evaluate(multi, multiQuery: true).cmc[0] == 1)
        #expect(try evaluate(multi, protocol: .cuhk03Classic, multiQuery: true).cmc[0] == 1)
    }

    @Test func differentDimensionIsAnError() throws {
        let q = try FeatureSet(features: [0, 0], dim: 2, pids: [1], camids: [1])
        let mq = try FeatureSet(features: [0], dim: 1, pids: [1], camids: [1])
        #expect(throws: EvalError.self) { try multiQueryAverage(query: q, multiQuery: mq) }
    }
}
