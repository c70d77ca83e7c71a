import Kernels

/// Outputs of one forward pass (pointers into the network's own buffers, valid
/// until the next forward).
public struct MancsOutputs {
    public let batch: Int
    /// f_rank [batch, embeddingDim]: the feature used at inference.
    public let fRank: UnsafeMutablePointer<Float>
    /// cls-head logits [batch, numClasses].
    public let clsLogits: UnsafeMutablePointer<Float>
    /// att-head logits [batch, numClasses].
    public let attLogits: UnsafeMutablePointer<Float>
}

/// An attention mask M of one FAB stage, NHWC [batch, height, width, channels].
public struct AttentionMask {
    public let stage: Int
    public let batch: Int, height: Int, width: Int, channels: Int
    public let values: UnsafePointer<Float>
    public var count: Int { batch * height * width * channels }
}

/// The Mancs network (docs/method.md §1): ResNet-50-style backbone, fully
/// attentional blocks after the chosen stages, and the rank / cls / att heads.
///
/// Parameters and BN running statistics live in two flat stores whose names,
/// shapes and order are PyTorch's `named_parameters()` / `named_buffers()` of
/// the reference. Every activation, gradient scratch buffer and workspace is
/// allocated at init for `maxBatch`; a step allocates nothing.
public final class MancsNetwork: @unchecked Sendable {
    public let config: MancsConfig
    public let maxBatch: Int
    /// Trainable parameters with gradients (`parameters.grads`).
    public let parameters: ParameterStore
    /// BatchNorm running_mean / running_var (no num_batches_tracked).
    public let buffers: ParameterStore

    private let arena: Arena
    private var bases: StoreBases
    private let scratch: Scratch

    // MARK: Layers
    private let stemConv: Conv
    private let stemBN: BatchNorm
    private let poolOut: UnsafeMutablePointer<Float>
    private let poolArgmax: UnsafeMutablePointer<Int32>
    private let poolHeight: Int, poolWidth: Int
    private let stages: [[Bottleneck]]
    /// FAB of stage s (1...4) or nil.
    private let attention: [AttentionBlock?]
    private let rankFC: Linear, clsFC: Linear, clsBN: BatchNorm, clsClassifier: Linear, attClassifier: Linear

    // MARK: Head activations
    private let images: UnsafeMutablePointer<Float>      // copy of the input, NHWC
    private let pooledFeature: UnsafeMutablePointer<Float>  // g = GAP(final) [N,D]
    private let fRank: UnsafeMutablePointer<Float>
    private let clsHidden: UnsafeMutablePointer<Float>      // fc(g)
    private let clsNormed: UnsafeMutablePointer<Float>      // relu(bn(fc(g)))
    private let clsLogits: UnsafeMutablePointer<Float>
    private let attInput: UnsafeMutablePointer<Float>       // concat GAP(A_s)
    private let attLogits: UnsafeMutablePointer<Float>
    private let gradPooledFeature: UnsafeMutablePointer<Float>
    private let gradPooledFeature2: UnsafeMutablePointer<Float>
    private let gradClsHidden: UnsafeMutablePointer<Float>
    private let gradClsNormed: UnsafeMutablePointer<Float>
    private let gradAttInput: UnsafeMutablePointer<Float>
    private let finalHeight: Int, finalWidth: Int

    /// The batch of the last forward, and whether it ran in training mode.
    public private(set) var lastBatch = 0
    public private(set) var lastForwardWasTraining = false
    /// True from a training forward until its backward: backward reuses scratch space that
    /// the forward's kept maps share (`keepConv3InScratch`), so it runs once per forward.
    private var backwardPending = false

    /// Builds the network for batches up to `maxBatch`, with deterministic
    /// initial weights from `seed` by `initialization` (see `InitScheme`).
    /// `rebuildConv3Stages`: stages whose bottlenecks rebuild conv3's output in backward
    /// instead of keeping it (bit-identical gradients; memory for FLOPs, see `Bottleneck`).
    /// `conv3InScratch`: a block of those stages keeps conv3's output after all where a
    /// scratch buffer has room for it from its forward to its backward (`keepConv3InScratch`).
    /// `foldBackward`: a block that does not keep it runs conv3 and bn3 backward as one
    /// (`Bottleneck.foldsConv3`; likewise a 1x1 shortcut not kept, `foldsShortcut`):
    /// nothing rebuilt, the same gradients up to float rounding; false rebuilds them
    /// instead (bit for bit the kept result).
    public init(config: MancsConfig, maxBatch: Int, seed: UInt64 = 0, initialization: InitScheme = .torchvision,
                rebuildConv3Stages: Set<Int> = MancsNetwork.defaultRebuildConv3Stages,
                conv3InScratch: Bool = true, foldBackward: Bool = true) throws {
        try config.validate()
        _ = try ConvAlgorithm.policyFromEnvironment()  // a bad MANCS_CONV_ALGORITHM: an error, not a crash
        guard maxBatch >= 1 else { throw MancsConfigError(message: "maximum batch must be at least 1, got \(maxBatch)") }
        self.config = config
        self.maxBatch = maxBatch
        let b = NetworkBuilder(config: config, maxBatch: maxBatch)
        let w = config.baseWidth

        // Stem: conv 7x7/2 pad 3, BN, ReLU, max-pool 3x3/2 pad 1.
        stemConv = b.conv("backbone.conv1", height: config.height, width: config.width, in: 3, out: w, kernel: 7,
                          stride: 2, padding: 3)
        stemBN = b.batchNorm("backbone.bn1", channels: w)
        // The stem's conv output and relu(BN(it)) live in scratch during forward and are
        // rebuilt in backward: 2 x 128 MiB at batch 64 for ~1% of a step (the 7x7 conv again).
        b.scratchActivation(stemConv.outPerImage)
        poolHeight = maxPool3x3s2OutputSize(stemConv.outHeight)
        poolWidth = maxPool3x3s2OutputSize(stemConv.outWidth)
        poolOut = b.activation(poolHeight * poolWidth * w)
        poolArgmax = b.arena.int32s(maxBatch * poolHeight * poolWidth * w)

        // Four stages of bottlenecks.
        var h = poolHeight, wd = poolWidth, inC = w
        var stages: [[Bottleneck]] = []
        var stageShapes: [(h: Int, w: Int, c: Int)] = []
        for stage in 1...4 {
            let planes = w << (stage - 1)
            let stride = stage == 1 ? 1 : (stage == 4 ? config.lastStride : 2)
            var blocks: [Bottleneck] = []
            for i in 0..<config.blocks[stage - 1] {
                let block = Bottleneck(b, "backbone.layer\(stage).\(i)", height: h, width: wd, inChannels: inC, planes: planes,
                                       stride: i == 0 ? stride : 1, lastPReLU: stage == 4 && i == config.blocks[stage - 1] - 1,
                                       rebuildsConv3: rebuildConv3Stages.contains(stage))
                block.foldBackward = foldBackward
                h = block.outHeight; wd = block.outWidth; inC = block.outChannels
                blocks.append(block)
            }
            stages.append(blocks)
            stageShapes.append((h, wd, inC))
        }
        self.stages = stages
        finalHeight = h; finalWidth = wd

        // FABs after the chosen stages (registered after the whole backbone).
        attention = (1...4).map { stage in
            guard config.attentionStages.contains(stage) else { return nil }
            let shape = stageShapes[stage - 1]
            return AttentionBlock(b, stage: stage, height: shape.h, width: shape.w, channels: shape.c)
        }

        // Heads.
        let d = config.featureDim, e = config.resolvedEmbeddingDim, hid = config.resolvedClsHidden
        let c = config.numClasses, a = config.attentionDim
        rankFC = Linear(&b.params, "heads.rank.fc", in: d, out: e)
        clsFC = Linear(&b.params, "heads.cls.fc", in: d, out: hid)
        clsBN = b.batchNorm("heads.cls.bn", channels: hid)
        clsClassifier = Linear(&b.params, "heads.cls.classifier", in: hid, out: c)
        attClassifier = Linear(&b.params, "heads.att.classifier", in: a, out: c)
        let arena = b.arena
        images = arena.floats(maxBatch * config.height * config.width * 3)  // not a scratch-sized map
        pooledFeature = arena.floats(maxBatch * d)
        fRank = arena.floats(maxBatch * e)
        clsHidden = arena.floats(maxBatch * hid)
        clsNormed = arena.floats(maxBatch * hid)
        clsLogits = arena.floats(maxBatch * c)
        attInput = arena.floats(maxBatch * a)
        attLogits = arena.floats(maxBatch * c)
        gradPooledFeature = arena.floats(maxBatch * d)
        gradPooledFeature2 = arena.floats(maxBatch * d)
        gradClsHidden = arena.floats(maxBatch * hid)
        gradClsNormed = arena.floats(maxBatch * hid)
        gradAttInput = arena.floats(maxBatch * a)

        // Flat stores, and the shared scratch.
        parameters = ParameterStore(shapes: b.params.shapes, withGradients: true)
        buffers = ParameterStore(shapes: b.buffers.shapes, withGradients: false)
        precondition(parameters.count == b.params.count && buffers.count == b.buffers.count, "store layout mismatch")
        scratch = Scratch(g: (0..<3).map { _ in arena.floats(b.maxActivationPerImage * maxBatch) },
                          workspace: arena.floats(b.maxWorkspace),
                          recompute: arena.floats(b.maxRecomputePerImage * maxBatch))
        self.arena = arena
        if conv3InScratch {
            MancsNetwork.keepConv3InScratch(stages: stages, attention: attention, scratch: scratch.g,
                                            floatsPerImage: b.maxActivationPerImage, maxBatch: maxBatch)
        }
        bases = StoreBases(values: parameters.values.baseAddress!, grads: parameters.grads!.baseAddress!,
                           buffers: buffers.values.baseAddress!)
        initialize(seed: seed, scheme: initialization)
    }

    /// conv3's output is not kept in the arena in any stage: stages 3 and 4 keep it in the
    /// scratch buffers' free tails (`keepConv3InScratch`: at full size all nine fit), stages 1
    /// and 2 fold conv3 and bn3 backward, which needs no conv3 output (`Bottleneck.foldsConv3`).
    /// At full size and batch 64 that holds 0.86 GiB less than keeping them all in the arena,
    /// for 1.7% more FLOPs (docs/performance.md). A stage-4 block that did not fit in scratch
    /// (other shapes) would fold too, but the last one (PReLU) rebuilds it.
    public static let defaultRebuildConv3Stages: Set<Int> = [1, 2, 3, 4]

    /// Gives conv3 outputs that backward would rebuild a place in the scratch buffers
    /// instead, where one is free for as long as they are needed. The buffers are sized
    /// for the largest map (the stem's, stage 1's), but from the forward of stage s to the
    /// end of its backward they hold only maps of stage s and later (each block's input,
    /// output and inner maps and their gradients, the FABs', the heads' pooled gradient):
    /// above the largest of those, every buffer is free in that window. Windows nest (a
    /// later stage's lies inside an earlier one's), so deeper stages are placed first and
    /// each buffer fills upward without overlap. At full size and batch 64 this keeps all
    /// nine stage-3 and stage-4 conv3 outputs (~250 MB) for nothing: 0.13 s less per step
    /// than rebuilding stage 3's, and 50 MB less than keeping stage 4's in the arena.
    private static func keepConv3InScratch(stages: [[Bottleneck]], attention: [AttentionBlock?],
                                           scratch: [UnsafeMutablePointer<Float>], floatsPerImage: Int, maxBatch: Int) {
        var cursor = [Int](repeating: 0, count: scratch.count)  // per buffer, floats per image
        var windowMaximum = 0
        for stage in stride(from: stages.count - 1, through: 0, by: -1) {
            windowMaximum = max(windowMaximum, stages[stage].map(\.scratchPerImage).max() ?? 0,
                                attention[stage].map { $0.height * $0.width * $0.channels } ?? 0)
            for block in stages[stage] where block.rebuildsConv3 {
                // The buffer where it can start lowest (best fit leaves the high ends,
                // which earlier stages' wider windows need, to them).
                let size = block.conv3.outPerImage
                let starts = cursor.map { max($0, windowMaximum) }
                guard let k = starts.indices.min(by: { starts[$0] < starts[$1] }), starts[k] + size <= floatsPerImage else {
                    continue
                }
                block.keepConv3(in: scratch[k] + starts[k] * maxBatch)
                cursor[k] = starts[k] + size
            }
        }
    }

    /// Bottlenecks that do not keep conv3's output, of all bottlenecks: `folded` run conv3
    /// and bn3 backward as one (`Bottleneck.foldsConv3`), `rebuilt` rebuild the output.
    public var conv3NotKept: (folded: Int, rebuilt: Int, blocks: Int) {
        let blocks = stages.joined(), notKept = blocks.filter(\.rebuildsConv3)
        let folded = notKept.filter(\.foldsConv3).count
        return (folded, notKept.count - folded, blocks.count)
    }

    /// Opt-in timing of every kernel call by layer kind (nil: off).
    public var profiler: LayerProfiler? {
        get { bases.profiler }
        set { bases.profiler = newValue }
    }

    /// Synchronised BatchNorm (SPEC section 6): when set, every training-mode
    /// BatchNorm normalises with the statistics of the whole batch that the
    /// replicas share, summed through this reducer (one call per layer in forward
    /// and one in backward; the replicas must run the same layers in the same
    /// order). nil: each replica's own batch (the default, and a single process).
    public var batchNormReducer: BatchNormStatisticsReducer? {
        get { bases.batchNormReducer }
        set { bases.batchNormReducer = newValue }
    }

    /// Called during backward with each layer's parameter range the moment its
    /// gradients are final, before `onGradientsReady`'s ordering holds any back
    /// (benchmarks use it to measure how much the ordering delays).
    public var gradientCompletionObserver: ((Range<Int>) -> Void)?

    /// Every convolution's shape at the maximum batch, in forward order (for
    /// FLOP counts and GEMM-only replays in benchmarks).
    public var convolutionShapes: [Conv2DShape] {
        var shapes = [stemConv.shape]
        for (i, blocks) in stages.enumerated() {
            for block in blocks {
                shapes += [block.conv1.shape, block.conv2.shape, block.conv3.shape]
                if let d = block.downsample { shapes.append(d.conv.shape) }
            }
            if let fab = attention[i] { shapes += [fab.conv1.shape, fab.conv2.shape] }
        }
        return shapes
    }

    /// The fully connected layers of the heads.
    var linearLayers: [Linear] { [rankFC, clsFC, clsClassifier, attClassifier] }

    /// Floats of activations, scratch and workspace held by the network.
    public var activationFloats: Int { arena.floatCount }

    // MARK: - Forward

    /// Runs the network on `batch` NHWC images (normalised, [batch, H, W, 3]).
    /// Training mode normalises with batch statistics and updates the running
    /// statistics; inference mode uses the running statistics.
    @discardableResult
    public func forward(images input: UnsafePointer<Float>, batch n: Int, training: Bool) -> MancsOutputs {
        precondition(n >= 1 && n <= maxBatch, "batch \(n) outside 1...\(maxBatch) (the network's maximum batch)")
        precondition(!training || n >= 2, "training-mode BatchNorm needs a batch of at least 2, got \(n)")
        let stores = bases
        let started = stores.profiler == nil ? 0 : monotonicNanoseconds()
        defer { if let p = stores.profiler { p.addForward(monotonicNanoseconds() &- started) } }
        lastBatch = n
        lastForwardWasTraining = training
        backwardPending = training
        Elementwise.copy(stores, count: n * config.height * config.width * 3, input, into: images)

        // Stem.
        let stemRows = n * stemConv.outHeight * stemConv.outWidth
        let stemConvOut = scratch.g[1]
        stemConv.forward(n, stores, input: images, output: stemConvOut, workspace: scratch.workspace)
        let stemOut = scratch.g[0]
        stemBN.forwardReLU(rows: stemRows, stores, training: training, input: stemConvOut, output: stemOut)
        Pooling.maxPool3x3s2Forward(stores, batch: n, height: stemConv.outHeight, width: stemConv.outWidth,
                                    channels: stemBN.channels, input: stemOut, output: poolOut, argmax: poolArgmax)

        // Stages and FABs.
        var x = UnsafePointer(poolOut)
        for (i, blocks) in stages.enumerated() {
            for block in blocks {
                block.forward(n, stores, training: training, input: x, scratch)
                x = UnsafePointer(block.output)
            }
            if let fab = attention[i] {
                fab.forward(n, stores, input: x, scratch: scratch.g[0], workspace: scratch.workspace)
                x = UnsafePointer(fab.output)
            }
        }

        // Heads.
        let d = config.featureDim
        Pooling.globalAvgPoolForward(stores, batch: n, spatial: finalHeight * finalWidth, channels: d, input: x, output: pooledFeature)
        rankFC.forward(rows: n, stores, input: pooledFeature, output: fRank)
        clsFC.forward(rows: n, stores, input: pooledFeature, output: clsHidden)
        clsBN.forward(rows: n, stores, training: training, input: clsHidden, output: clsNormed)
        Activation.relu.forward(stores, count: n * clsBN.channels, input: clsNormed, output: clsNormed)
        clsClassifier.forward(rows: n, stores, input: clsNormed, output: clsLogits)
        let fabs = attention.compactMap { $0 }
        Elementwise.concatColumns(stores, rows: n, parts: fabs.map { UnsafePointer($0.pooled) }, widths: fabs.map(\.channels),
                                  output: attInput)
        attClassifier.forward(rows: n, stores, input: attInput, output: attLogits)
        return outputs
    }

    /// The outputs of the last forward.
    public var outputs: MancsOutputs {
        MancsOutputs(batch: lastBatch, fRank: fRank, clsLogits: clsLogits, attLogits: attLogits)
    }

    /// The attention masks of the last forward, one per FAB stage, in stage order.
    public var attentionMasks: [AttentionMask] {
        attention.compactMap { fab in
            fab.map { AttentionMask(stage: $0.stage, batch: lastBatch, height: $0.height, width: $0.width,
                                    channels: $0.channels, values: $0.mask) }
        }
    }

    // MARK: - Backward

    /// Backpropagates the gradients of the loss with respect to the three
    /// outputs of the last (training-mode) forward, once per forward, ACCUMULATING into
    /// `parameters.grads`. Each time a layer's parameter gradients are final,
    /// `onGradientsReady` receives their flat range; ranges arrive in
    /// decreasing offset order and cover the whole store exactly once (the
    /// attention blocks, stored after the backbone, hold back the backbone
    /// ranges below them until they are done). `gradImages` [N,H,W,3], when
    /// given, receives the gradient with respect to the input images.
    public func backward(gradFRank: UnsafePointer<Float>, gradClsLogits: UnsafePointer<Float>,
                         gradAttLogits: UnsafePointer<Float>,
                         gradImages: UnsafeMutablePointer<Float>? = nil,
                         onGradientsReady: ((Range<Int>) -> Void)? = nil) {
        precondition(lastBatch > 0 && lastForwardWasTraining, "backward needs a training-mode forward first")
        precondition(backwardPending, "backward runs once per training-mode forward (it reuses that forward's scratch space): run forward again")
        backwardPending = false
        let n = lastBatch, stores = bases, g = scratch.g, ws = scratch.workspace
        let started = stores.profiler == nil ? 0 : monotonicNanoseconds()
        defer { if let p = stores.profiler { p.addBackward(monotonicNanoseconds() &- started) } }
        let ready = GradientReadiness(count: parameters.count, report: onGradientsReady,
                                      observe: gradientCompletionObserver)

        // Heads, last registered first: att classifier, cls classifier, cls BN, cls fc, rank fc.
        attClassifier.backward(rows: n, stores, input: attInput, gradOutput: gradAttLogits, gradInput: gradAttInput)
        ready.complete(attClassifier.range)
        clsClassifier.backward(rows: n, stores, input: clsNormed, gradOutput: gradClsLogits, gradInput: gradClsNormed)
        ready.complete(clsClassifier.range)
        Activation.relu.backward(stores, count: n * clsBN.channels, output: clsNormed, gradOutput: gradClsNormed, gradInput: gradClsNormed)
        clsBN.backward(rows: n, stores, input: clsHidden, gradOutput: gradClsNormed, gradInput: gradClsHidden)
        ready.complete(clsBN.range)
        clsFC.backward(rows: n, stores, input: pooledFeature, gradOutput: gradClsHidden, gradInput: gradPooledFeature)
        ready.complete(clsFC.range)
        rankFC.backward(rows: n, stores, input: pooledFeature, gradOutput: gradFRank, gradInput: gradPooledFeature2)
        ready.complete(rankFC.range)
        Elementwise.addInPlace(stores, count: n * config.featureDim, gradPooledFeature2, into: gradPooledFeature)
        let fabs = attention.compactMap { $0 }
        Elementwise.splitColumns(stores, rows: n, input: gradAttInput, widths: fabs.map(\.channels), parts: fabs.map(\.gradPooled))

        // Into the final feature map; then stages in reverse. `cur` indexes the
        // scratch buffer holding the gradient of the current activation (of three).
        var cur = 0
        Pooling.globalAvgPoolBackward(stores, batch: n, spatial: finalHeight * finalWidth, channels: config.featureDim,
                                      gradOutput: gradPooledFeature, gradInput: g[cur])
        for i in stride(from: 3, through: 0, by: -1) {
            let blocks = stages[i]
            let stageOutput = UnsafePointer(blocks.last!.output)
            if let fab = attention[i] {
                let next = (cur + 1) % 3
                fab.backward(n, stores, input: stageOutput, gradOutput: g[cur], gradInput: g[next], t1: scratch.recompute,
                             t2: g[(cur + 2) % 3], workspace: ws, ready: ready)
                cur = next
            }
            for j in stride(from: blocks.count - 1, through: 0, by: -1) {
                let input = j > 0 ? UnsafePointer(blocks[j - 1].output) : blockInput(stage: i)
                let next = (cur + 1) % 3
                let inputGradient = blocks[j].backward(n, stores, input: input, gradOutput: g[cur], gradInput: g[next],
                                                       t2: g[(cur + 2) % 3], scratch, ready: ready)
                if inputGradient == g[next] { cur = next }
            }
        }

        // Stem.
        let next = (cur + 1) % 3
        let stemRows = n * stemConv.outHeight * stemConv.outWidth
        Pooling.maxPool3x3s2Backward(stores, batch: n, height: stemConv.outHeight, width: stemConv.outWidth,
                                     channels: stemBN.channels, gradOutput: g[cur], argmax: poolArgmax, gradInput: g[next])
        // Rebuild the conv output (in the pooled gradient's buffer, now free); BN+ReLU
        // backward (the ReLU mask from the conv output) into the third buffer.
        let stemConvOut = g[cur], gradStemConv = g[(cur + 2) % 3], gradStemOut = g[next]
        stemConv.forward(n, stores, input: images, output: stemConvOut, workspace: ws)
        stemBN.backwardReLU(rows: stemRows, stores, input: stemConvOut, gradOutput: gradStemOut, gradInput: gradStemConv)
        ready.complete(stemBN.range)
        stemConv.backward(n, stores, input: images, gradOutput: gradStemConv, gradInput: gradImages, workspace: ws)
        ready.complete(stemConv.range)
        precondition(onGradientsReady == nil || ready.isFinished, "gradient ranges did not cover the store")
    }

    /// Input of stage i's first block: the pooled stem, or the previous stage's output (after its FAB).
    private func blockInput(stage i: Int) -> UnsafePointer<Float> {
        if i == 0 { return UnsafePointer(poolOut) }
        if let fab = attention[i - 1] { return UnsafePointer(fab.output) }
        return UnsafePointer(stages[i - 1].last!.output)
    }
}
