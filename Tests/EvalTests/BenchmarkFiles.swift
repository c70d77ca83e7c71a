// Writes the feature files the evaluation is timed on (docs/evaluation.md). Off by
// default; enabled by MANCS_EVAL_BENCH_DIR=/some/dir:
//
//   MANCS_EVAL_BENCH_DIR=/tmp/evalbench swift test --filter EvalTests.BenchmarkFiles
//
// then `mancs eval --features /tmp/evalbench/market.h5` (and big.h5) from a release build.
import Foundation
import ReIDEval
import Testing
import TestSupport

/// A synthetic re-ID set with realistic labels: `ids` identities, each seen by a
/// random 2...cams of the cameras; features = identity centre + uniform noise.
struct SyntheticReID {
    var ids: Int, cams: Int, dim: Int, noise: Float
    var rng: SplitMix64
    var centres: [Float] = []
    var camSets: [[Int64]] = []

    init(ids: Int, cams: Int, dim: Int, noise: Float, seed: UInt64) {
        self.ids = ids; self.cams = cams; self.dim = dim; self.noise = noise
        rng = SplitMix64(seed: seed)
        centres = rng.array(ids * dim)
        for _ in 0..<ids {
            let k = 2 + Int(rng.next() % UInt64(cams - 1))
            var all = (1...Int64(cams)).map { $0 }
            for i in 0..<(cams - 1) { all.swapAt(i, i + Int(rng.next() % UInt64(cams - i))) }
            camSets.append(Array(all.prefix(k)))
        }
    }

    /// `n` images: image i belongs to identity (i % ids) + 1; `distractors` more images
    /// with pid 0 and random features at the end.
    mutating func images(_ n: Int, distractors: Int = 0) throws -> FeatureSet {
        var features = [Float](repeating: 0, count: (n + distractors) * dim)
        var pids: [Int64] = [], camids: [Int64] = []
        for i in 0..<n {
            let id = i % ids
            for k in 0..<dim { features[i * dim + k] = centres[id * dim + k] + noise * rng.nextSigned() }
            pids.append(Int64(id + 1))
            camids.append(camSets[id][Int(rng.next() % UInt64(camSets[id].count))])
        }
        for i in n..<(n + distractors) {
            for k in 0..<dim { features[i * dim + k] = rng.nextSigned() + noise * rng.nextSigned() }
            pids.append(0)
            camids.append(1 + Int64(rng.next() % UInt64(cams)))
        }
        return try FeatureSet(features: features, dim: dim, pids: pids, camids: camids)
    }
}

@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["MANCS_EVAL_BENCH_DIR"] != nil))
struct BenchmarkFiles {
    var dir: String { ProcessInfo.processInfo.environment["MANCS_EVAL_BENCH_DIR"]! }

    /// Market-1501 sized: 3,368 queries, 19,732 gallery (2,793 distractors), 750 ids, 6 cameras, E = 2048.
    @Test func marketSized() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var s = SyntheticReID(ids: 750, cams: 6, dim: 2048, noise: 2.5, seed: 1501)
        let q = try s.images(3368)
        let g = try s.images(19732 - 2793, distractors: 2793)
        try FeaturesFile(query: q, gallery: g).write(to: dir + "/market.h5")
    }

    /// Large: 20,000 queries against 500,000 gallery images, 25,000 ids, 8 cameras, E = 128.
    @Test func large() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var s = SyntheticReID(ids: 25000, cams: 8, dim: 128, noise: 1.2, seed: 500_000)
        let g = try s.images(500_000)
        s.ids = 20000  // queries cover the first 20,000 identities
        let q = try s.images(20000)
        try FeaturesFile(query: q, gallery: g).write(to: dir + "/big.h5")
    }
}
