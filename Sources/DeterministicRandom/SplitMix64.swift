// MARK: SplitMix64: the one random generator of the project

/// A random stream determined only by its seed: the same seed gives the same
/// numbers on any rank, thread, toolchain or resumed run. Weight initialisation,
/// the synthetic dataset, the sampler, augmentation, triplet negatives and the
/// CUHK03 protocol all draw from it, so their streams are fixed by this file.
/// Seeds for independent streams are derived by hashing coordinates such as
/// (seed, epoch, batch, slot) with `SplitMix64.key`.
///
/// SplitMix64 (Steele, Lea and Flood 2014): a counter advanced by the golden-ratio
/// increment, then a strong 64-bit mixer (`mix`), which `key` also uses.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    @inlinable public init(seed: UInt64) { state = seed }

    /// SplitMix64's finaliser: a bijective 64-bit mix.
    @inlinable @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The golden-ratio increment of the counter.
    @inlinable public static var increment: UInt64 { 0x9E37_79B9_7F4A_7C15 }

    /// Hashes a domain tag and coordinates into one seed (order matters).
    public static func key(_ domain: UInt64, _ coordinates: Int...) -> UInt64 {
        var h = mix(domain &+ increment)
        for c in coordinates { h = mix(h ^ mix(UInt64(bitPattern: Int64(c)) &+ 0x632B_E59B_D9B4_E019)) }
        return h
    }

    @inlinable public mutating func next() -> UInt64 {
        state &+= Self.increment
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * uniform() }

    /// Uniform integer in 0..<n (n > 0), by multiply-high (no modulo bias worth noting).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0, "below(\(n)): the range is empty")
        return Int(next().multipliedFullWidth(by: UInt64(n)).high)
    }
}
