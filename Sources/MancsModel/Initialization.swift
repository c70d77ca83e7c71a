import Foundation

/// A small deterministic generator (SplitMix64) for weight initialisation.
public struct InitRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1).
    mutating func unit() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
    /// Standard normal (Box-Muller).
    mutating func normal() -> Double {
        sqrt(-2 * log(unit())) * cos(2 * Double.pi * unit())
    }
}

extension MancsNetwork {
    /// torchvision-style initialisation, deterministic for a seed:
    /// convs kaiming-normal (fan_out, ReLU gain) with zero bias (the FAB convs too),
    /// BatchNorm weight 1 / bias 0, Linear weight and bias uniform(+-1/sqrt(in)),
    /// PReLU 0.25; running_mean 0, running_var 1. Gradients are zeroed.
    public func initialize(seed: UInt64) {
        var rng = InitRandom(seed: seed)
        let v = parameters.values.baseAddress!
        for t in parameters.tensors {
            let p = v + t.offset
            let name = t.name
            if t.shape.count == 4 {
                // Kaiming normal, mode fan_out: std = sqrt(2 / (out * k * k)). Layout-independent (iid).
                let std = (2.0 / Double(t.shape[0] * t.shape[2] * t.shape[3])).squareRoot()
                for i in 0..<t.count { p[i] = Float(rng.normal() * std) }
            } else if name.hasSuffix("prelu.weight") {
                p.update(repeating: 0.25, count: t.count)
            } else if isBatchNorm(name) {
                p.update(repeating: name.hasSuffix(".weight") ? 1 : 0, count: t.count)
            } else if name.hasPrefix("attention.") {
                p.update(repeating: 0, count: t.count)  // FAB conv bias
            } else {
                // Linear weight [out, in] or bias [out]: uniform(-1/sqrt(in), 1/sqrt(in)).
                let weightName = name.hasSuffix(".bias") ? String(name.dropLast(5)) + ".weight" : name
                let fanIn = parameters.info(weightName)?.shape.last ?? t.shape.last!
                let bound = 1 / Double(fanIn).squareRoot()
                for i in 0..<t.count { p[i] = Float((rng.unit() * 2 - 1) * bound) }
            }
        }
        let b = buffers.values.baseAddress!
        for t in buffers.tensors {
            b.advanced(by: t.offset).update(repeating: t.name.hasSuffix("running_var") ? 1 : 0, count: t.count)
        }
        parameters.zeroGradients()
    }

    private func isBatchNorm(_ name: String) -> Bool {
        let module = name.split(separator: ".").dropLast().joined(separator: ".")
        return buffers.info(module + ".running_mean") != nil
    }
}
