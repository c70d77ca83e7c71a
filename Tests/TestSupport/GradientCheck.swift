@_exported import DeterministicRandom  // every test draws from SplitMix64

/// Caffe-style finite-difference gradient checking shared by every kernel and
/// loss test.
///
/// `f` computes a scalar from a flat input (in Double for a clean difference);
/// `analytic` is the gradient the code under test produced. A sample of up to
/// `maxChecks` coordinates (all when fewer) is perturbed by +-h; the check
/// returns the worst relative error |num - ana| / max(|num| + |ana|, floor).
public func gradientCheck(
    input: inout [Float], analytic: [Float], h: Float = 1e-2, maxChecks: Int = 200,
    floor: Double = 1e-2, seed: UInt64 = 1, _ f: ([Float]) -> Double
) -> (worst: Double, index: Int, numeric: Double, analytic: Double) {
    precondition(input.count == analytic.count, "gradient has \(analytic.count) entries for \(input.count) inputs")
    var rng = SplitMix64(seed: seed)
    let indices: [Int] = input.count <= maxChecks
        ? Array(0..<input.count)
        : (0..<maxChecks).map { _ in Int(rng.next() % UInt64(input.count)) }
    var worst = (worst: 0.0, index: -1, numeric: 0.0, analytic: 0.0)
    for i in indices {
        let old = input[i]
        input[i] = old + h
        let up = f(input)
        input[i] = old - h
        let down = f(input)
        input[i] = old
        let num = (up - down) / (2 * Double(h))
        let ana = Double(analytic[i])
        let err = abs(num - ana) / max(abs(num) + abs(ana), floor)
        if err > worst.worst { worst = (err, i, num, ana) }
    }
    return worst
}

/// Tests draw from the project's one generator (DeterministicRandom), with two helpers.
extension SplitMix64 {
    /// Uniform in [-1, 1).
    public mutating func nextSigned() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    public mutating func array(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in nextSigned() * scale } }
}
