import DeterministicRandom
import Foundation
import HDF5Kit
import Kernels
import MancsModel

// Compares the Swift network, losses and optimiser against a PyTorch fixture
// (shared/fixtures/README.md): one training-mode forward, the three losses with
// the fixture's negatives, the backward, then clipping + one Adam step applied
// to the fixture's own gradients. Used by `mancs check-reference` and the tests.

public struct ReferenceTolerances: Sendable {
    public var losses = 1e-4
    public var outputs = 1e-3
    public var gradients = 2e-2
    public var step1Parameters = 1e-4
    public var step1Buffers = 1e-3
    /// Let the gradient tolerance grow to twice the network's own float32
    /// sensitivity on this input (see `float32Sensitivity`), up to
    /// `conditionedCeiling`. Off with `mancs check-reference --strict`.
    public var adaptToConditioning = true
    /// The tolerance the issue calls fair where float32 itself is that noisy
    /// (PyTorch's own float32 reaches 2.5e-2 at full ResNet-50 size).
    public var conditionedCeiling = 5e-2
    public init() {}
}

/// A worst error and where it occurred.
public struct WorstError: Sendable {
    public var value: Double = 0
    public var name: String = ""
    mutating func record(_ v: Double, _ n: String) {
        if !(v <= value) { value = v; name = n }  // NaN always wins
    }
}

public struct ReferenceCheckResult: Sendable {
    public var path: String
    /// Relative L2 error of each output (f_rank, cls_logits, att_logits, masks/layerS), in order.
    public var outputs: [(name: String, error: Double)] = []
    /// Relative error of each loss (rank, cls, att, total), in order.
    public var losses: [(name: String, error: Double, value: Float, reference: Float)] = []
    /// Per parameter: |g - ref|_2 / (|ref|_2 + 1e-6 * global norm).
    public var gradients: [(name: String, error: Double)] = []
    public var worstGradient = WorstError()
    /// Worst per-tensor gradient change of this very implementation when the
    /// input images are perturbed by relative 1e-6 (4 draws): how much float32
    /// noise alone can move the gradients on this input. A ReLU input
    /// within rounding of zero (an ill-conditioned fixture) makes it large.
    public var float32Sensitivity = WorstError()
    /// max |p - ref| / |ref update|_2 per parameter after one clipped Adam step on the fixture's gradients.
    public var worstStep1Parameter = WorstError()
    /// Relative L2 error of the running statistics after the training forward.
    public var worstStep1Buffer = WorstError()
    public var tolerances: ReferenceTolerances

    public var worstOutput: WorstError { outputs.reduce(into: WorstError()) { $0.record($1.error, $1.name) } }
    public var worstLoss: WorstError { losses.reduce(into: WorstError()) { $0.record($1.error, $1.name) } }

    /// The gradient tolerance applied: the default, or twice the measured float32
    /// sensitivity when that is larger (capped at the conditioned ceiling).
    public var gradientTolerance: Double {
        guard tolerances.adaptToConditioning, float32Sensitivity.value.isFinite else { return tolerances.gradients }
        return max(tolerances.gradients, min(2 * float32Sensitivity.value, tolerances.conditionedCeiling))
    }

    public var passed: Bool {
        worstOutput.value <= tolerances.outputs && worstLoss.value <= tolerances.losses
            && worstGradient.value <= gradientTolerance && worstStep1Parameter.value <= tolerances.step1Parameters
            && worstStep1Buffer.value <= tolerances.step1Buffers
    }

    /// One JSON object (single line, sorted keys).
    public var json: String {
        func num(_ x: Double) -> Any { x.isFinite ? x : String(describing: x) }
        func worst(_ w: WorstError, _ tol: Double) -> [String: Any] {
            ["worst": num(w.value), "worst_name": w.name, "tolerance": tol, "pass": w.value <= tol]
        }
        let sorted = gradients.map(\.error).sorted()
        var grads = worst(worstGradient, gradientTolerance)
        grads["median"] = num(sorted.isEmpty ? 0 : sorted[sorted.count / 2])
        grads["default_tolerance"] = tolerances.gradients
        grads["float32_sensitivity"] = num(float32Sensitivity.value)
        grads["float32_sensitivity_name"] = float32Sensitivity.name
        grads["tensors"] = gradients.count
        var outs = worst(worstOutput, tolerances.outputs)
        outs["each"] = Dictionary(uniqueKeysWithValues: outputs.map { ($0.name, num($0.error)) })
        var ls = worst(worstLoss, tolerances.losses)
        ls["each"] = Dictionary(uniqueKeysWithValues: losses.map { ($0.name, num($0.error)) })
        ls["values"] = Dictionary(uniqueKeysWithValues: losses.map { ($0.name, num(Double($0.value))) })
        let object: [String: Any] = [
            "file": path, "outputs": outs, "losses": ls, "gradients": grads,
            "step1_params": worst(worstStep1Parameter, tolerances.step1Parameters),
            "step1_buffers": worst(worstStep1Buffer, tolerances.step1Buffers),
            "pass": passed,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

public struct ReferenceCheckError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The settings stored in a fixture's `/config` attributes.
public struct ReferenceSettings: Sendable {
    public var model = MancsConfig()
    public var losses = LossSettings()
    public var P = 0, K = 0
    public var lr: Float = 3e-4, beta1: Float = 0.9, beta2: Float = 0.999, adamEps: Float = 1e-8
    public var clipNorm: Float = 5

    public init(from group: HDF5Group) throws {
        func int(_ k: String) throws -> Int {
            guard let v = try group.attribute(k, as: Int64.self).first else { throw ReferenceCheckError("\(group.file.path): /config attribute \(k) is empty") }
            return Int(v)
        }
        func ints(_ k: String) throws -> [Int] { try group.attribute(k, as: Int64.self).map { Int($0) } }
        func real(_ k: String) throws -> Float {
            guard let v = try group.attribute(k, as: Double.self).first else { throw ReferenceCheckError("\(group.file.path): /config attribute \(k) is empty") }
            return Float(v)
        }
        model.baseWidth = try int("base_width")
        model.blocks = try ints("blocks")
        model.lastStride = try int("last_stride")
        model.numClasses = try int("num_classes")
        model.attentionStages = try ints("attention_stages")
        model.reduction = try int("reduction")
        model.embeddingDim = try int("embedding_dim")
        model.clsHidden = try int("cls_hidden")
        model.height = try int("height")
        model.width = try int("width")
        model.bnMomentum = try real("bn_momentum")
        model.bnEps = try real("bn_eps")
        P = try int("P"); K = try int("K")
        losses = LossSettings(margin: try real("margin"), gamma: try real("gamma"), lambdaRank: try real("lambda_rank"),
                              lambdaCls: try real("lambda_cls"), lambdaAtt: try real("lambda_att"))
        lr = try real("lr"); beta1 = try real("beta1"); beta2 = try real("beta2"); adamEps = try real("adam_eps")
        clipNorm = try real("clip_norm")
        do { try model.validate() } catch { throw ReferenceCheckError("\(group.file.path): /config: \(error)") }
        guard P >= 1, K >= 1, P * K >= 2 else { throw ReferenceCheckError("\(group.file.path): /config: P x K = \(P) x \(K) is not a batch") }
    }
}

public enum ReferenceCheck {
    /// Runs the whole comparison; throws (one-line message) on a missing or malformed file.
    public static func run(path: String, tolerances: ReferenceTolerances = ReferenceTolerances()) throws -> ReferenceCheckResult {
        let file = try HDF5File(openForReading: path)
        let root = file.root
        let settings = try ReferenceSettings(from: try root.group("config"))
        let cfg = settings.model
        let n = settings.P * settings.K
        let network = try MancsNetwork(config: cfg, maxBatch: n)
        try network.parameters.load(from: try root.group("model"))
        try network.buffers.load(from: try root.group("buffers"))

        // Inputs.
        func read(_ name: String, shape: [Int]) throws -> [Float] {
            let (v, s) = try root.read(name, as: Float.self)
            guard s == shape else { throw ReferenceCheckError("\(path): \(name) has shape \(s), expected \(shape)") }
            return v
        }
        let nchw = try read("/input/images", shape: [n, 3, cfg.height, cfg.width])
        var images = [Float](repeating: 0, count: nchw.count)
        nchw.withUnsafeBufferPointer { src in
            images.withUnsafeMutableBufferPointer { dst in
                nchwToNHWC(batch: n, channels: 3, height: cfg.height, width: cfg.width, src.baseAddress!, dst.baseAddress!)
            }
        }
        let labels = try root.read("/input/labels", as: Int64.self).values.map { Int($0) }
        guard labels.count == n, labels.allSatisfy({ (0..<cfg.numClasses).contains($0) }) else {
            throw ReferenceCheckError("\(path): /input/labels must be \(n) labels in 0..<\(cfg.numClasses)")
        }
        let negatives = try root.read("/forward/negatives", as: Int64.self).values.map { Int($0) }
        let pairs = tripletPairs(labels: labels)
        guard negatives.count == pairs.count,
              zip(pairs, negatives).allSatisfy({ (0..<n).contains($1) && labels[$1] != labels[$0.anchor] }) else {
            throw ReferenceCheckError("\(path): /forward/negatives must hold one negative of the anchor for each of the \(pairs.count) pairs")
        }

        // Forward, losses, backward.
        let step = TrainStep(network: network, losses: settings.losses)
        var rng = SplitMix64(seed: 0)  // unused with fixed negatives
        let losses = images.withUnsafeBufferPointer {
            step.run(images: $0.baseAddress!, labels: labels, sampling: .fixed(negatives), rng: &rng)
        }
        var result = ReferenceCheckResult(path: path, tolerances: tolerances)

        // Outputs.
        let out = network.outputs
        let e = cfg.resolvedEmbeddingDim, c = cfg.numClasses
        for (name, ptr, width) in [("f_rank", out.fRank, e), ("cls_logits", out.clsLogits, c), ("att_logits", out.attLogits, c)] {
            let ref = try read("/forward/\(name)", shape: [n, width])
            result.outputs.append((name, relativeL2(Array(UnsafeBufferPointer(start: ptr, count: n * width)), ref)))
        }
        for m in network.attentionMasks {
            let ref = try read("/forward/masks/layer\(m.stage)", shape: [n, m.channels, m.height, m.width])
            var mine = [Float](repeating: 0, count: m.count)
            mine.withUnsafeMutableBufferPointer {
                nhwcToNCHW(batch: n, channels: m.channels, height: m.height, width: m.width, m.values, $0.baseAddress!)
            }
            result.outputs.append(("masks/layer\(m.stage)", relativeL2(mine, ref)))
        }

        // Losses.
        for (name, value) in [("rank", losses.rank), ("cls", losses.cls), ("att", losses.att), ("total", losses.total)] {
            let ref = try read("/forward/loss_\(name)", shape: [])[0]
            let err = Double(abs(value - ref)) / (Double(abs(ref)) + 1e-12)
            result.losses.append((name, err, value, ref))
        }

        // Gradients.
        let gradGroup = try root.group("grads")
        let globalNorm = gradGroup.hasAttribute("global_norm_before_clip")
            ? try gradGroup.attribute("global_norm_before_clip", as: Double.self).first ?? 0 : 0
        for t in network.parameters.tensors {
            let ref = try read("/grads/\(t.name)", shape: t.shape)
            let mine = network.parameters.export(t, gradient: true)
            let err = l2(zip(mine, ref).map { $0 - $1 }) / (l2(ref) + 1e-6 * globalNorm)
            result.gradients.append((t.name, err))
            result.worstGradient.record(err, t.name)
        }

        // Running statistics after the training forward.
        for t in network.buffers.tensors {
            let ref = try read("/step1/buffers/\(t.name)", shape: t.shape)
            result.worstStep1Buffer.record(relativeL2(network.buffers.export(t), ref), t.name)
        }

        // Float32 conditioning: the same step on images moved by relative 1e-6,
        // about the relative error float32 accumulates in the middle of a deep
        // network (the outputs above are ~1e-4 from float64 on small fixtures).
        let ours = network.parameters.tensors.map { network.parameters.export($0, gradient: true) }
        for trial in 0..<4 {
            var noise = SplitMix64(seed: UInt64(101 + trial))
            let moved = images.map { $0 * (1 + 1e-6 * (Float(noise.next() >> 40) / Float(1 << 24) * 2 - 1)) }
            _ = moved.withUnsafeBufferPointer {
                step.run(images: $0.baseAddress!, labels: labels, sampling: .fixed(negatives), rng: &rng)
            }
            for (t, g0) in zip(network.parameters.tensors, ours) {
                let g1 = network.parameters.export(t, gradient: true)
                let change = l2(zip(g1, g0).map { $0 - $1 }) / (l2(g0) + 1e-6 * globalNorm)
                result.float32Sensitivity.record(change, t.name)
            }
        }

        // One clipped Adam step on the fixture's own gradients.
        try network.parameters.load(from: gradGroup, gradient: true)
        let params = network.parameters
        clipGradientNorm(params.grads!, maxNorm: settings.clipNorm)
        let adam = Adam(count: params.count, lr: settings.lr, beta1: settings.beta1, beta2: settings.beta2,
                        eps: settings.adamEps)
        adam.update(parameters: params.values, gradients: UnsafeBufferPointer(params.grads!))
        for t in params.tensors {
            let before = try read("/model/\(t.name)", shape: t.shape)
            let ref = try read("/step1/model/\(t.name)", shape: t.shape)
            let mine = params.export(t)
            let maxError = zip(mine, ref).reduce(0.0) { max($0, Double(abs($1.0 - $1.1))) }
            let update = l2(zip(ref, before).map { $0 - $1 })
            result.worstStep1Parameter.record(maxError == 0 ? 0 : maxError / update, t.name)
        }
        return result
    }

    static func l2(_ x: [Float]) -> Double { x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot() }

    /// |a - b|_2 / |b|_2 (0 when both are zero).
    static func relativeL2(_ a: [Float], _ b: [Float]) -> Double {
        let diff = l2(zip(a, b).map { $0 - $1 }), norm = l2(b)
        return diff == 0 ? 0 : diff / norm
    }
}
