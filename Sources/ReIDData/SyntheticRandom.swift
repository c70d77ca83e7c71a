// The seeded random source behind the synthetic dataset.
// Own arithmetic only (no stdlib `random(in:)`), so files are bit-identical for a seed across toolchains.

import DeterministicRandom

/// SplitMix64 (DeterministicRandom) with helpers for the draws the generator needs. Independent
/// streams come from mixing the dataset seed with stream labels, so one image's draws never
/// depend on another's.
struct SyntheticRNG {
    private var source: SplitMix64

    init(seed: UInt64, stream: UInt64...) {
        var s = SyntheticRNG.mix(seed ^ 0x6A09_E667_F3BC_C908)
        for label in stream { s = SyntheticRNG.mix(s ^ SyntheticRNG.mix(label &+ SplitMix64.increment)) }
        source = SplitMix64(seed: s)
    }

    /// One SplitMix64 step from `value` (the golden-ratio increment, then the finaliser).
    static func mix(_ value: UInt64) -> UInt64 { SplitMix64.mix(value &+ SplitMix64.increment) }

    mutating func next() -> UInt64 { source.next() }

    /// Uniform in [0, 1).
    mutating func unit() -> Float { Float(next() >> 40) * (1.0 / Float(1 << 24)) }

    /// Uniform in [low, high).
    mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * unit() }

    /// Uniform integer in the closed range.
    mutating func int(_ range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound + 1)
        return range.lowerBound + Int(next() % span)
    }

    mutating func chance(_ probability: Float) -> Bool { unit() < probability }

    /// Standard normal (Box-Muller on our own uniforms).
    mutating func normal() -> Float {
        let u1 = max(unit(), 1e-7), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * Float.pi * u2)
    }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, int(0...i)) }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
