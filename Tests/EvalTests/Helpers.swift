import ReIDEval
import TestSupport

/// A set of 1-D features: distances to a query at 0 are then x^2, easy to work by hand.
func line(_ xs: [Float], pids: [Int64], cams: [Int64]) throws -> FeatureSet {
    try FeatureSet(features: xs, dim: 1, pids: pids, camids: cams)
}

/// Random labelled features. `integer` draws coordinates from -2...2 (exact in
/// float, many distance ties); otherwise uniform in [-1, 1).
func randomSet(_ n: Int, dim: Int, ids: Int, cams: Int, integer: Bool, rng: inout SplitMix64) throws -> FeatureSet {
    let features: [Float] = (0..<(n * dim)).map { _ in
        integer ? Float(Int(rng.next() % 5) - 2) : rng.nextSigned()
    }
    let pids = (0..<n).map { _ in Int64(rng.next() % UInt64(ids)) }
    let camids = (0..<n).map { _ in Int64(rng.next() % UInt64(cams)) + 1 }
    return try FeatureSet(features: features, dim: dim, pids: pids, camids: camids)
}

func close(_ a: Double, _ b: Double, _ tol: Double = 1e-12) -> Bool { abs(a - b) <= tol }
func close(_ a: [Double], _ b: [Double], _ tol: Double = 1e-12) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}
