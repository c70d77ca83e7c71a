import DeterministicRandom
import Foundation

/// The draws of weight initialisation, from the project's one generator.
extension SplitMix64 {
    /// Uniform in (0, 1).
    mutating func unit() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
    /// Standard normal (Box-Muller).
    mutating func normal() -> Double {
        sqrt(-2 * log(unit())) * cos(2 * Double.pi * unit())
    }
}

/// How layers without pretrained weights are initialised (docs/training.md).
public enum InitScheme: String, Sendable, Codable, CaseIterable {
    /// PyTorch's defaults for every layer, as the reference model gets them
    /// when nothing re-initialises it: `nn.Conv2d` / `nn.Linear` `reset_parameters`,
    /// weight and bias uniform(+-1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)),
    /// fan_in = in x kH x kW.
    case pytorch
    /// torchvision's ResNet: convs (the FAB convs too) kaiming-normal, mode
    /// fan_out, ReLU gain, zero conv bias; linears as `pytorch`.
    case torchvision
}

extension MancsNetwork {
    /// Deterministic initialisation for a seed, by `scheme`. Both schemes:
    /// BatchNorm weight 1 / bias 0, running_mean 0 / running_var 1, PReLU 0.25,
    /// Linear weight and bias uniform(+-1/sqrt(in)). Convs: see `InitScheme`.
    /// Gradients are zeroed.
    public func initialize(seed: UInt64, scheme: InitScheme = .torchvision) {
        var rng = SplitMix64(seed: seed)
        let v = parameters.values.baseAddress!
        for tensor in parameters.tensors {
            let p = v + tensor.offset
            let name = tensor.name
            if tensor.shape.count == 4 && scheme == .torchvision {
                // Kaiming normal, mode fan_out: std = sqrt(2 / (out * k * k)). Layout-independent (iid).
                let std = (2.0 / Double(tensor.shape[0] * tensor.shape[2] * tensor.shape[3])).squareRoot()
                for i in 0..<tensor.count { p[i] = Float(rng.normal() * std) }
            } else if name.hasSuffix("prelu.weight") {
                p.update(repeating: 0.25, count: tensor.count)
            } else if isBatchNorm(name) {
                p.update(repeating: name.hasSuffix(".weight") ? 1 : 0, count: tensor.count)
            } else if name.hasPrefix("attention.") && name.hasSuffix(".bias") && scheme == .torchvision {
                p.update(repeating: 0, count: tensor.count)  // FAB conv bias
            } else {
                // PyTorch's reset_parameters of a conv or linear: weight [out, in(, kH, kW)]
                // and its bias uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in x kH x kW.
                let bound = 1 / Double(Self.fanIn(of: name, in: parameters)).squareRoot()
                for i in 0..<tensor.count { p[i] = Float((rng.unit() * 2 - 1) * bound) }
            }
        }
        let b = buffers.values.baseAddress!
        for tensor in buffers.tensors {
            b.advanced(by: tensor.offset).update(repeating: tensor.name.hasSuffix("running_var") ? 1 : 0, count: tensor.count)
        }
        parameters.zeroGradients()
    }

    /// fan_in of a conv or linear weight, or of the weight a bias belongs to:
    /// the product of the weight's dimensions after the first.
    static func fanIn(of name: String, in store: ParameterStore) -> Int {
        let weightName = name.hasSuffix(".bias") ? String(name.dropLast(5)) + ".weight" : name
        let shape = store.info(weightName)?.shape ?? store.info(name)!.shape
        return shape.count > 1 ? shape.dropFirst().reduce(1, *) : shape[0]
    }

    private func isBatchNorm(_ name: String) -> Bool {
        let module = name.split(separator: ".").dropLast().joined(separator: ".")
        return buffers.info(module + ".running_mean") != nil
    }
}
