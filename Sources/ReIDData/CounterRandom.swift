// MARK: Counter-based random numbers

/// A random stream determined only by a key: the same key gives the same
/// numbers on any rank, thread or resumed run. Keys are derived by hashing
/// coordinates such as (seed, epoch, batch, slot) with `CounterRandom.key`.
///
/// The generator is SplitMix64 started from the key; SplitMix's output
/// function is a strong 64-bit mixer, which is also what `key` uses.
public struct CounterRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(key: UInt64) { state = key }

    /// SplitMix64's finaliser: a bijective 64-bit mix.
    @inline(__always) public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Hashes a domain tag and coordinates into one key (order matters).
    public static func key(_ domain: UInt64, _ coordinates: Int...) -> UInt64 {
        var h = mix(domain &+ 0x9E37_79B9_7F4A_7C15)
        for c in coordinates { h = mix(h ^ mix(UInt64(bitPattern: Int64(c)) &+ 0x632B_E59B_D9B4_E019)) }
        return h
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform in [a, b).
    public mutating func uniform(_ a: Double, _ b: Double) -> Double { a + (b - a) * uniform() }

    /// Uniform integer in 0..<n (n > 0), by multiply-high (no modulo bias worth noting).
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0, "below(\(n)): the range is empty")
        return Int(next().multipliedFullWidth(by: UInt64(n)).high)
    }
}

/// Domain tags so streams for different purposes never coincide.
enum RandomDomain {
    static let epochPermutation: UInt64 = 0x5045_524D   // "PERM"
    static let identityImages: UInt64 = 0x4944_494D      // "IDIM"
    static let augmentation: UInt64 = 0x4155_474D        // "AUGM"
}
