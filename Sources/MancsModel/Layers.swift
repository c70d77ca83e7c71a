import Kernels

// The layers with parameters the network is made of. A layer knows where its
// tensors sit in the flat stores (offsets, fixed at build time) and calls the
// kernels; it owns no activations (the blocks do). Forward beside backward.

// MARK: - Memory

/// Owns the raw allocations of one network (activations, saved statistics,
/// workspaces); everything is allocated once at build time and freed together.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private(set) var floatCount = 0

    func floats(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        floatCount += n
        return p
    }

    func int32s(_ n: Int) -> UnsafeMutablePointer<Int32> {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    deinit { for b in blocks { b.deallocate() } }
}

/// Base pointers of the three flat stores, handed to every layer call.
struct StoreBases {
    let values: UnsafeMutablePointer<Float>
    let grads: UnsafeMutablePointer<Float>
    let buffers: UnsafeMutablePointer<Float>
    /// Set while profiling (see `LayerProfiler`).
    var profiler: LayerProfiler? = nil
    /// Set for synchronised BatchNorm (see `MancsNetwork.batchNormReducer`).
    var batchNormReducer: BatchNormStatisticsReducer? = nil
}

/// Collects tensor names and shapes in PyTorch's registration order while the
/// network is built; the offsets it hands out are those `ParameterStore` lays out.
struct StoreLayout {
    var shapes: [(name: String, shape: [Int])] = []
    var count = 0

    mutating func add(_ name: String, _ shape: [Int]) -> Int {
        let offset = count
        shapes.append((name, shape))
        count += shape.reduce(1, *)
        return offset
    }
}

/// Reports parameter-gradient ranges in decreasing offset order. A layer whose
/// gradients complete while a layer above it (higher offsets) is still open is
/// held back until everything above it has been reported: the attention blocks
/// sit after the whole backbone in PyTorch's order but finish in between its stages.
final class GradientReadiness {
    private var top: Int
    private var pending: [Int: Int] = [:]  // upperBound -> lowerBound
    private let report: ((Range<Int>) -> Void)?
    /// Sees every layer's range as soon as it completes, before any holding back.
    private let observe: ((Range<Int>) -> Void)?

    init(count: Int, report: ((Range<Int>) -> Void)?, observe: ((Range<Int>) -> Void)? = nil) {
        top = count
        self.report = report
        self.observe = observe
    }

    func complete(_ range: Range<Int>) {
        if let observe, !range.isEmpty { observe(range) }
        guard report != nil, !range.isEmpty else { return }
        pending[range.upperBound] = range.lowerBound
        while let lower = pending.removeValue(forKey: top) {
            report?(lower..<top)
            top = lower
        }
    }

    /// True when every range down to offset 0 has been reported.
    var isFinished: Bool { top == 0 }
}

// MARK: - Convolution

struct Conv {
    /// Shape at the maximum batch; `batch` is replaced per call.
    let shape: Conv2DShape
    let weight: Int
    let bias: Int?
    /// Flat offsets of this layer's parameters (weight, then bias).
    let range: Range<Int>
    /// im2col + GEMM, or Winograd for eligible 3x3 convs (`MANCS_CONV_ALGORITHM`).
    let algorithm: ConvAlgorithm

    init(_ layout: inout StoreLayout, _ name: String, _ shape: Conv2DShape, bias: Bool) {
        self.shape = shape
        algorithm = ConvAlgorithm.chosen(for: shape)
        weight = layout.add("\(name).weight", [shape.outChannels, shape.inChannels, shape.kernel, shape.kernel])
        self.bias = bias ? layout.add("\(name).bias", [shape.outChannels]) : nil
        range = weight..<layout.count
    }

    func at(_ n: Int) -> Conv2DShape { var s = shape; s.batch = n; return s }
    var kind: LayerKind { shape.isPointwise ? .conv1x1 : .convKxK }
    var outHeight: Int { shape.outHeight }
    var outWidth: Int { shape.outWidth }
    /// Output floats per image.
    var outPerImage: Int { shape.outHeight * shape.outWidth * shape.outChannels }

    func forward(_ n: Int, _ t: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                 workspace: UnsafeMutablePointer<Float>) {
        t.timed(kind) {
            conv2DForward(at(n), input: input, weight: t.values + weight, bias: bias.map { UnsafePointer(t.values + $0) },
                          output: output, workspace: workspace, algorithm: algorithm)
        }
    }

    func backward(_ n: Int, _ t: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>?, workspace: UnsafeMutablePointer<Float>) {
        t.timed(kind) {
            conv2DBackward(at(n), input: input, weight: t.values + weight, gradOutput: gradOutput, gradInput: gradInput,
                           gradWeight: t.grads + weight, gradBias: bias.map { t.grads + $0 }, workspace: workspace,
                           algorithm: algorithm)
        }
    }
}

// MARK: - Batch normalisation

/// BatchNorm2d (rows = N*H*W) or BatchNorm1d (rows = N) over [rows, channels].
struct BatchNorm {
    let channels: Int
    let gamma: Int, beta: Int
    let runningMean: Int, runningVar: Int
    let momentum: Float, eps: Float
    /// Batch mean and 1/sqrt(var + eps) of the last training forward.
    let saveMean: UnsafeMutablePointer<Float>
    let saveInvStd: UnsafeMutablePointer<Float>
    var range: Range<Int> { gamma..<(beta + channels) }

    init(_ layout: inout StoreLayout, _ buffers: inout StoreLayout, _ arena: Arena, _ name: String,
         channels: Int, config: MancsConfig) {
        self.channels = channels
        gamma = layout.add("\(name).weight", [channels])
        beta = layout.add("\(name).bias", [channels])
        runningMean = buffers.add("\(name).running_mean", [channels])
        runningVar = buffers.add("\(name).running_var", [channels])
        momentum = config.bnMomentum
        eps = config.bnEps
        saveMean = arena.floats(channels)
        saveInvStd = arena.floats(channels)
    }

    func forward(rows: Int, _ t: StoreBases, training: Bool, input: UnsafePointer<Float>,
                 output: UnsafeMutablePointer<Float>) {
        t.timed(.batchNorm) { forwardBody(rows: rows, t, training: training, input: input, output: output) }
    }

    private func forwardBody(rows: Int, _ t: StoreBases, training: Bool, input: UnsafePointer<Float>,
                             output: UnsafeMutablePointer<Float>) {
        if training {
            batchNormForwardTraining(rows: rows, channels: channels, input: input, gamma: t.values + gamma,
                                     beta: t.values + beta, output: output, saveMean: saveMean, saveInvStd: saveInvStd,
                                     runningMean: t.buffers + runningMean, runningVar: t.buffers + runningVar,
                                     momentum: momentum, eps: eps, reducer: t.batchNormReducer)
        } else {
            batchNormForwardInference(rows: rows, channels: channels, input: input, gamma: t.values + gamma,
                                      beta: t.values + beta, runningMean: t.buffers + runningMean,
                                      runningVar: t.buffers + runningVar, eps: eps, output: output)
        }
    }

    // MARK: BatchNorm + ReLU (fused: one pass, and no pre-ReLU buffer)

    /// output = relu(BN(input)).
    func forwardReLU(rows: Int, _ t: StoreBases, training: Bool, input: UnsafePointer<Float>,
                     output: UnsafeMutablePointer<Float>) {
        t.timed(.batchNorm) {
            if training {
                batchNormReLUForwardTraining(rows: rows, channels: channels, input: input, gamma: t.values + gamma,
                                             beta: t.values + beta, output: output, saveMean: saveMean,
                                             saveInvStd: saveInvStd, runningMean: t.buffers + runningMean,
                                             runningVar: t.buffers + runningVar, momentum: momentum, eps: eps,
                                             reducer: t.batchNormReducer)
            } else {
                batchNormReLUForwardInference(rows: rows, channels: channels, input: input, gamma: t.values + gamma,
                                              beta: t.values + beta, runningMean: t.buffers + runningMean,
                                              runningVar: t.buffers + runningVar, eps: eps, output: output)
            }
        }
    }

    /// The training forward's relu(BN(input)) again, bit for bit, from the statistics it
    /// saved (synchronised ones included), for backward: activations that are this
    /// cheap to rebuild are not kept.
    func recomputeReLU(rows: Int, _ t: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        t.timed(.batchNorm) {
            batchNormReLURecompute(rows: rows, channels: channels, input: input, gamma: t.values + gamma,
                                   beta: t.values + beta, saveMean: saveMean, saveInvStd: saveInvStd, output: output)
        }
    }

    /// Backward of `forwardReLU` (training): `output` is its post-ReLU output.
    func backwardReLU(rows: Int, _ t: StoreBases, input: UnsafePointer<Float>, output: UnsafePointer<Float>,
                      gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
        t.timed(.batchNorm) {
            batchNormReLUBackward(rows: rows, channels: channels, input: input, output: output, gamma: t.values + gamma,
                                  saveMean: saveMean, saveInvStd: saveInvStd, gradOutput: gradOutput,
                                  gradInput: gradInput, gradGamma: t.grads + gamma, gradBeta: t.grads + beta,
                                  reducer: t.batchNormReducer)
        }
    }

    func backward(rows: Int, _ t: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>) {
        t.timed(.batchNorm) {
            batchNormBackward(rows: rows, channels: channels, input: input, gamma: t.values + gamma, saveMean: saveMean,
                              saveInvStd: saveInvStd, gradOutput: gradOutput, gradInput: gradInput,
                              gradGamma: t.grads + gamma, gradBeta: t.grads + beta, reducer: t.batchNormReducer)
        }
    }
}

// MARK: - Linear

struct Linear {
    let inFeatures: Int, outFeatures: Int
    let weight: Int, bias: Int
    var range: Range<Int> { weight..<(bias + outFeatures) }

    init(_ layout: inout StoreLayout, _ name: String, in inF: Int, out outF: Int) {
        inFeatures = inF
        outFeatures = outF
        weight = layout.add("\(name).weight", [outF, inF])
        bias = layout.add("\(name).bias", [outF])
    }

    func forward(rows: Int, _ t: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        t.timed(.linear) {
            linearForward(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, input: input,
                          weight: t.values + weight, bias: t.values + bias, output: output)
        }
    }

    func backward(rows: Int, _ t: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>?) {
        t.timed(.linear) {
            linearBackward(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, input: input,
                           weight: t.values + weight, gradOutput: gradOutput, gradInput: gradInput,
                           gradWeight: t.grads + weight, gradBias: t.grads + bias)
        }
    }
}
