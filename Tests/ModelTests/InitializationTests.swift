import Foundation
import MancsModel
import Testing

// The two initialisation schemes (docs/training.md, "Initialisation"): every
// tensor's values against the distribution PyTorch's or torchvision's code
// gives that layer: bounds, mean and second moment within statistical
// tolerance (5 standard errors).

@Suite struct InitializationTests {
    /// Big enough that most tensors have hundreds of values; two classes of
    /// attention width so the FAB convs are not 1 x 1.
    static func config() -> MancsConfig {
        var c = MancsConfig()
        c.baseWidth = 8
        c.blocks = [1, 1, 1, 1]
        c.attentionStages = [2, 3, 4]
        c.numClasses = 10
        c.height = 64
        c.width = 32
        return c
    }

    enum Law { case uniform(bound: Double), normal(std: Double), constant(Double) }

    /// What a tensor should hold under a scheme (PyTorch reset_parameters /
    /// torchvision ResNet __init__), from its name and shape alone.
    static func law(_ t: TensorInfo, scheme: InitScheme, isBatchNorm: Bool, shapes: [String: [Int]]) -> Law {
        let name = t.name
        if name.hasSuffix("prelu.weight") { return .constant(0.25) }
        if isBatchNorm { return .constant(name.hasSuffix(".weight") ? 1 : 0) }
        if scheme == .torchvision && t.shape.count == 4 {
            return .normal(std: (2.0 / Double(t.shape[0] * t.shape[2] * t.shape[3])).squareRoot())
        }
        if scheme == .torchvision && name.hasPrefix("attention.") && name.hasSuffix(".bias") { return .constant(0) }
        // Conv or linear weight [out, in, ...] and its bias: fan_in = in x kH x kW.
        let weight = name.hasSuffix(".bias") ? String(name.dropLast(5)) + ".weight" : name
        let fanIn = shapes[weight]!.dropFirst().reduce(1, *)
        return .uniform(bound: 1 / Double(fanIn).squareRoot())
    }

    @Test(arguments: InitScheme.allCases)
    func everyTensorFollowsItsLaw(scheme: InitScheme) throws {
        let net = try MancsNetwork(config: Self.config(), maxBatch: 2, seed: 7, initialization: scheme)
        let shapes = Dictionary(uniqueKeysWithValues: net.parameters.tensors.map { ($0.name, $0.shape) })
        var checkedStatistics = 0
        for t in net.parameters.tensors {
            let module = t.name.split(separator: ".").dropLast().joined(separator: ".")
            let bn = net.buffers.info(module + ".running_mean") != nil
            let x = net.parameters.export(t).map(Double.init)
            let n = Double(x.count)
            let mean = x.reduce(0, +) / n, second = x.reduce(0) { $0 + $1 * $1 } / n
            switch Self.law(t, scheme: scheme, isBatchNorm: bn, shapes: shapes) {
            case .constant(let c):
                #expect(x.allSatisfy { $0 == c }, "\(t.name) should be \(c) everywhere")
            case .uniform(let b):
                #expect(x.allSatisfy { abs($0) <= b * (1 + 1e-6) }, "\(t.name) outside +-\(b)")
                // E x = 0 (sd b/sqrt(3n)); E x^2 = b^2/3 (sd b^2 sqrt(4/45)/sqrt(n)).
                if x.count >= 50 {
                    #expect(abs(mean) < 5 * b / (3 * n).squareRoot(), "\(t.name) mean \(mean), bound \(b)")
                    #expect(abs(second - b * b / 3) < 5 * b * b * (4.0 / 45).squareRoot() / n.squareRoot(),
                            "\(t.name) E x^2 = \(second), uniform(+-\(b)) gives \(b * b / 3)")
                    // Both ends of the interval are reached (a narrower law would pass the bound).
                    #expect(x.max()! > b * (1 - 20 / n) && x.min()! < -b * (1 - 20 / n), "\(t.name) does not span +-\(b)")
                    checkedStatistics += 1
                }
            case .normal(let s):
                #expect(x.allSatisfy { abs($0) < 7 * s }, "\(t.name): a value beyond 7 sd")
                if x.count >= 50 {
                    #expect(abs(mean) < 5 * s / n.squareRoot(), "\(t.name) mean \(mean), sd \(s)")
                    // E x^2 = s^2, sd s^2 sqrt(2/n).
                    #expect(abs(second - s * s) < 5 * s * s * (2 / n).squareRoot(), "\(t.name) E x^2 = \(second), want \(s * s)")
                    checkedStatistics += 1
                }
            }
        }
        #expect(checkedStatistics >= 20)
        for t in net.buffers.tensors {
            let want: Float = t.name.hasSuffix("running_var") ? 1 : 0
            #expect(net.buffers.export(t).allSatisfy { $0 == want }, "\(t.name)")
        }
    }

    @Test func schemesDifferOnlyWhereTheyShould() throws {
        let a = try MancsNetwork(config: Self.config(), maxBatch: 2, seed: 7, initialization: .pytorch)
        let b = try MancsNetwork(config: Self.config(), maxBatch: 2, seed: 7, initialization: .torchvision)
        for t in a.parameters.tensors {
            let same = a.parameters.export(t) == b.parameters.export(t)
            let convOrFABBias = t.shape.count == 4 || (t.name.hasPrefix("attention.") && t.name.hasSuffix(".bias"))
            let constant = t.name.contains("bn") || t.name.contains("downsample.1") || t.name.hasSuffix("prelu.weight")
            if convOrFABBias { #expect(!same, "\(t.name) should differ between the schemes") }
            else if constant { #expect(same, "\(t.name)") }
        }
        // Deterministic for a seed; another seed gives other values.
        let c = try MancsNetwork(config: Self.config(), maxBatch: 2, seed: 7, initialization: .pytorch)
        let d = try MancsNetwork(config: Self.config(), maxBatch: 2, seed: 8, initialization: .pytorch)
        let w = a.parameters.tensors[0]
        #expect(a.parameters.export(w) == c.parameters.export(w))
        #expect(a.parameters.export(w) != d.parameters.export(w))
    }
}
