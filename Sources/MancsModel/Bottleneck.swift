import Kernels

/// torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), with an
/// optional 1x1 projection shortcut and, for the very last block, a PReLU in
/// place of the final ReLU.
final class Bottleneck {
    let conv1: Conv, bn1: BatchNorm, conv2: Conv, bn2: BatchNorm, conv3: Conv, bn3: BatchNorm
    let downsample: (conv: Conv, bn: BatchNorm)?
    let prelu: PReLU?
    let inHeight: Int, inWidth: Int, inChannels: Int
    let outHeight: Int, outWidth: Int, outChannels: Int

    // Saved activations (maximum batch): what backward cannot cheaply rebuild. c* are
    // conv outputs (BN inputs); `sum` is bn3 + shortcut, ReLU'd in place unless PReLU,
    // and is the block's output. The ReLU'd BN outputs b1 = relu(bn1(c1)) and
    // b2 = relu(bn2(c2)) live in scratch during forward and are rebuilt from c1, c2 in
    // backward (one BatchNorm pass each, ~1% of a step, for ~0.5 GB at full size), as
    // is the shortcut's BN output. The shortcut conv's output `dc` is kept unless
    // rebuilding it is cheap (see `rebuildsShortcut`), and so is c3 (`rebuildsConv3`);
    // where either is not kept, backward mostly needs neither (`foldsConv3`, `foldsShortcut`).
    private let c1, c2, sum: UnsafeMutablePointer<Float>
    private let dc, preluOut: UnsafeMutablePointer<Float>?
    /// conv3's output when kept: in the arena, or in a scratch buffer's tail (`keepConv3`).
    private var c3: UnsafeMutablePointer<Float>?
    /// True when backward recomputes the shortcut conv instead of keeping its output:
    /// for the projection whose input has at most `baseWidth` channels (stage 1 of a
    /// ResNet: the largest map, 128 MiB at batch 64, for 0.4% more FLOPs). Deeper
    /// projections cost 4-16x more per float kept.
    let rebuildsShortcut: Bool
    /// True when conv3's output (bn3's input, 4 x planes channels) is not kept: backward
    /// folds conv3 and bn3 (`foldsConv3`), or else recomputes it from the rebuilt b2 (one
    /// more 1x1 GEMM, 2 x planes FLOPs per float not kept). The network asks for it in
    /// every stage and takes it back where a scratch buffer has room for c3 all the while
    /// it is needed (at full size, stages 3 and 4: `keepConv3`), so stages 1 and 2 fold: 0.86 GiB.
    private(set) var rebuildsConv3: Bool
    /// True when backward runs conv3 and bn3 as one (`pointwiseConvBatchNormBackward`),
    /// which needs neither c3 nor bn3's input gradient: conv3's output is then not rebuilt
    /// at all. For a block that does not keep c3 and ends in a ReLU (the ReLU pass forms
    /// the sums it needs); `foldBackward` false restores the rebuild (tests compare).
    var foldsConv3: Bool { rebuildsConv3 && prelu == nil && foldBackward && conv3.bias == nil }
    /// The same for a shortcut conv that is not kept (`rebuildsShortcut`), where it is a
    /// plain 1x1 (stride 1, stage 1's projection): neither it nor its BN output is rebuilt.
    var foldsShortcut: Bool {
        guard let (dconv, _) = downsample else { return false }
        return rebuildsShortcut && prelu == nil && foldBackward && dconv.shape.isPointwise && dconv.bias == nil
    }
    /// Whether the folds above may run (the default); set by the network.
    var foldBackward = true

    init(_ b: NetworkBuilder, _ name: String, height: Int, width: Int, inChannels: Int, planes: Int, stride: Int,
         lastPReLU: Bool, rebuildsConv3: Bool) {
        let out = planes * 4
        inHeight = height; inWidth = width; self.inChannels = inChannels; outChannels = out
        conv1 = b.conv("\(name).conv1", height: height, width: width, in: inChannels, out: planes, kernel: 1, stride: 1, padding: 0)
        bn1 = b.batchNorm("\(name).bn1", channels: planes)
        conv2 = b.conv("\(name).conv2", height: height, width: width, in: planes, out: planes, kernel: 3, stride: stride, padding: 1)
        bn2 = b.batchNorm("\(name).bn2", channels: planes)
        outHeight = conv2.outHeight; outWidth = conv2.outWidth
        conv3 = b.conv("\(name).conv3", height: outHeight, width: outWidth, in: planes, out: out, kernel: 1, stride: 1, padding: 0)
        bn3 = b.batchNorm("\(name).bn3", channels: out)
        if stride != 1 || inChannels != out {
            let dconv = b.conv("\(name).downsample.0", height: height, width: width, in: inChannels, out: out, kernel: 1,
                               stride: stride, padding: 0)
            precondition(dconv.outHeight == outHeight && dconv.outWidth == outWidth, "\(name): shortcut shape mismatch")
            downsample = (dconv, b.batchNorm("\(name).downsample.1", channels: out))
        } else {
            downsample = nil
        }
        prelu = lastPReLU ? PReLU(&b.params, "\(name).prelu", channels: out) : nil

        c1 = b.activation(conv1.outPerImage)
        c2 = b.activation(conv2.outPerImage)
        self.rebuildsConv3 = rebuildsConv3
        c3 = rebuildsConv3 ? nil : b.activation(conv3.outPerImage)
        sum = b.activation(conv3.outPerImage)
        rebuildsShortcut = downsample != nil && inChannels <= b.config.baseWidth
        dc = downsample == nil || rebuildsShortcut ? nil : b.activation(conv3.outPerImage)
        preluOut = lastPReLU ? b.activation(conv3.outPerImage) : nil
        b.recomputed(conv1.outPerImage)
        b.recomputed(conv2.outPerImage)
    }

    /// Keeps conv3's output in `slot` (`conv3.outPerImage` floats per image of the maximum
    /// batch) instead of rebuilding it in backward. The caller guarantees that nothing else
    /// writes there from this block's forward to the end of its backward.
    func keepConv3(in slot: UnsafeMutablePointer<Float>) {
        precondition(rebuildsConv3, "conv3's output is already kept")
        c3 = slot
        rebuildsConv3 = false
    }

    /// The most floats per image this block holds in a scratch buffer (`Scratch.g`) in
    /// forward or backward: b1, b2, the shortcut's and rebuilt outputs, and the gradients
    /// of its input, output and inner maps.
    var scratchPerImage: Int { max(inPerImage, outPerImage, conv1.outPerImage, conv2.outPerImage) }

    /// The block's output (valid after forward).
    var output: UnsafeMutablePointer<Float> { preluOut ?? sum }
    var outPerImage: Int { outHeight * outWidth * outChannels }
    var inPerImage: Int { inHeight * inWidth * inChannels }

    // MARK: Forward

    /// Uses scratch.g[0...2] for b1, b2, the shortcut's conv (and in inference its BN)
    /// output, and a c3 that is not kept. The shortcut runs before conv3, so that bn3, the
    /// add and the final ReLU are one pass over the output (`forwardAdd`); in training that
    /// pass also normalises the shortcut (its BN computes statistics only), so the
    /// shortcut's BN output is never written.
    func forward(_ n: Int, _ stores: StoreBases, training: Bool, input x: UnsafePointer<Float>, _ scratch: Scratch) {
        let inRows = n * inHeight * inWidth, outRows = n * outHeight * outWidth
        let b1 = scratch.g[0], b2 = scratch.g[1], c3 = self.c3 ?? scratch.g[2]
        conv1.forward(n, stores, input: x, output: c1, workspace: scratch.workspace)
        bn1.forwardReLU(rows: inRows, stores, training: training, input: c1, output: b1)
        conv2.forward(n, stores, input: b1, output: c2, workspace: scratch.workspace)
        bn2.forwardReLU(rows: outRows, stores, training: training, input: c2, output: b2)
        guard let (dconv, dbn) = downsample else {
            conv3.forward(n, stores, input: b2, output: c3, workspace: scratch.workspace)
            bn3.forwardAdd(rows: outRows, stores, training: training, input: c3, residual: x, relu: prelu == nil, output: sum)
            finishForward(outRows, stores)
            return
        }
        if training {
            // b1 is dead by now: a scratch dc takes its buffer and lives until bn3's pass,
            // which normalises it with dbn's statistics as it adds.
            let dc = self.dc ?? scratch.g[0]
            dconv.forward(n, stores, input: x, output: dc, workspace: scratch.workspace)
            dbn.forwardStatistics(rows: outRows, stores, input: dc)
            conv3.forward(n, stores, input: b2, output: c3, workspace: scratch.workspace)
            bn3.forwardAdd(rows: outRows, stores, input: c3, residualBN: dbn, residualInput: dc, relu: prelu == nil,
                           output: sum)
        } else {
            // Inference (running statistics): the shortcut's BN output in b1's buffer; a scratch
            // dc is read by dbn before conv3 writes a scratch c3 over it.
            let dc = self.dc ?? scratch.g[2], db = scratch.g[0]
            dconv.forward(n, stores, input: x, output: dc, workspace: scratch.workspace)
            dbn.forward(rows: outRows, stores, training: false, input: dc, output: db)
            conv3.forward(n, stores, input: b2, output: c3, workspace: scratch.workspace)
            bn3.forwardAdd(rows: outRows, stores, training: false, input: c3, residual: db, relu: prelu == nil, output: sum)
        }
        finishForward(outRows, stores)
    }

    private func finishForward(_ outRows: Int, _ stores: StoreBases) {
        if let prelu, let preluOut {
            prelu.forward(rows: outRows, stores, input: sum, output: preluOut)
        }
    }

    // MARK: Backward

    /// The input gradient from gradOutput, which is consumed; gradInput and t2 are free
    /// scratch buffers. Three activation-sized buffers in all. Returns the buffer that
    /// holds the input gradient: gradInput, or with an identity shortcut gradOutput's
    /// (d(sum) is already the shortcut's share, so conv1 adds onto it in place instead of
    /// onto a copy).
    @discardableResult
    func backward(_ n: Int, _ stores: StoreBases, input x: UnsafePointer<Float>, gradOutput: UnsafeMutablePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>, t2: UnsafeMutablePointer<Float>,
                  _ scratch: Scratch, ready: GradientReadiness) -> UnsafeMutablePointer<Float> {
        let inRows = n * inHeight * inWidth, outRows = n * outHeight * outWidth
        let count = outRows * outChannels
        let workspace = scratch.workspace, rebuilt = scratch.recompute
        // Final activation: t1 = d(sum), formed in gradOutput's buffer. After a ReLU, the
        // same pass forms the gradient sums of the BatchNorms it feeds whose inputs are at
        // hand: bn3's (kept c3, or with the fold off, for an identity block rebuilt first
        // into t2, which is free until bn3's backward), and the shortcut BN's (kept, or
        // rebuilt first into gradInput's buffer, which it occupies until its BN backward has
        // read it); a folded pair needs only sum_r g.
        let t1 = gradOutput
        // conv3 and bn3 backward folded together (`foldsConv3`): bn3's input is not needed;
        // the same for the shortcut (`foldsShortcut`): its conv output is not needed either.
        let folds = foldsConv3, foldsShortcut = self.foldsShortcut
        let dc = downsample == nil || foldsShortcut ? nil : self.dc ?? gradInput
        var c3 = self.c3, c3Sums: BatchNormGradientSums?, dcSums: BatchNormGradientSums?, sumG: [Double]?
        if let prelu {
            prelu.backward(rows: outRows, stores, input: sum, gradOutput: gradOutput, gradInput: t2)
            Elementwise.copy(stores, count: count, t2, into: t1)
            ready.complete(prelu.range)
        } else {
            if c3 == nil && downsample == nil && !folds {
                bn2.recomputeReLU(rows: outRows, stores, input: c2, output: rebuilt)
                conv3.forward(n, stores, input: rebuilt, output: t2, workspace: workspace)
                c3 = t2
            }
            if let (dconv, _) = downsample, rebuildsShortcut, let dc {
                dconv.forward(n, stores, input: x, output: dc, workspace: workspace)
            }
            let fed = [c3.map { ($0, UnsafePointer(bn3.saveMean)) },
                       dc.map { ($0, UnsafePointer(downsample!.bn.saveMean)) }].compactMap { $0 }
            if fed.isEmpty && (folds || foldsShortcut) {
                sumG = stores.timed(.batchNorm) {
                    reluBackwardWithSums(rows: outRows, channels: outChannels, output: sum, gradOutput: gradOutput, gradInput: t1)
                }
            } else if fed.isEmpty {
                Activation.relu.backward(stores, count: count, output: sum, gradOutput: gradOutput, gradInput: t1)
            } else {
                let sums = stores.timed(.batchNorm) {
                    reluBackwardWithBatchNormSums(rows: outRows, channels: outChannels, output: sum, gradOutput: gradOutput,
                                                  gradInput: t1, first: (UnsafePointer(fed[0].0), fed[0].1),
                                                  second: fed.count > 1 ? (UnsafePointer(fed[1].0), fed[1].1) : nil)
                }
                if c3 != nil { c3Sums = sums[0] }
                if dc != nil { dcSums = sums[sums.count - 1] }
                if folds || foldsShortcut { sumG = sums[0].sumG }
            }
        }
        // Shortcut: `inputGradient` = d(shortcut input), which conv1 completes; `free` is the
        // buffer left for the main path's inner gradients.
        let inputGradient: UnsafeMutablePointer<Float>, free: UnsafeMutablePointer<Float>
        if let (dconv, dbn) = downsample, foldsShortcut, let sumG {
            // Overwrites gradInput with d(shortcut input), as dconv's backward would.
            foldedBackward(outRows, stores, conv: dconv, bn: dbn, input: x, gradOutput: t1, sumG: sumG, gradInput: gradInput)
            ready.complete(dbn.range)
            ready.complete(dconv.range)
            inputGradient = gradInput; free = t1
        } else if let (dconv, dbn) = downsample, let dc {
            if rebuildsShortcut && dcSums == nil { dconv.forward(n, stores, input: x, output: dc, workspace: workspace) }
            if let dcSums {
                dbn.backward(rows: outRows, stores, input: dc, gradOutput: t1, gradInput: t2, sums: dcSums)
            } else {
                dbn.backward(rows: outRows, stores, input: dc, gradOutput: t1, gradInput: t2)
            }
            ready.complete(dbn.range)
            dconv.backward(n, stores, input: x, gradOutput: t2, gradInput: gradInput, workspace: workspace)
            ready.complete(dconv.range)
            inputGradient = gradInput; free = t1
        } else {
            inputGradient = t1; free = gradInput
        }
        // Main path, last layer first; b2, then b1, rebuilt in `rebuilt`. t1 is read for
        // the last time by bn3's backward. b2's gradient lands in `d2`, and the main path's
        // gradients then alternate between d2 and `other`.
        let d2: UnsafeMutablePointer<Float>, other: UnsafeMutablePointer<Float>
        if folds, let sumG {
            bn2.recomputeReLU(rows: outRows, stores, input: c2, output: rebuilt)
            // Reads t1 while it writes b2's gradient, so that goes to t2 (free since the shortcut).
            foldedBackward(outRows, stores, conv: conv3, bn: bn3, input: rebuilt, gradOutput: t1, sumG: sumG, gradInput: t2)
            ready.complete(bn3.range)
            ready.complete(conv3.range)
            d2 = t2; other = free
        } else {
            if let c3 {
                if let c3Sums {
                    bn3.backward(rows: outRows, stores, input: c3, gradOutput: t1, gradInput: t2, sums: c3Sums)
                } else {
                    bn3.backward(rows: outRows, stores, input: c3, gradOutput: t1, gradInput: t2)
                }
                ready.complete(bn3.range)
                // b2 again, unless the identity block's c3 rebuild above made it already.
                if self.c3 != nil { bn2.recomputeReLU(rows: outRows, stores, input: c2, output: rebuilt) }
            } else {
                // c3 again (the same GEMM on the same b2: bit for bit) into t2; BN backward
                // overwrites it with its input gradient (each element reads its own input first).
                bn2.recomputeReLU(rows: outRows, stores, input: c2, output: rebuilt)
                conv3.forward(n, stores, input: rebuilt, output: t2, workspace: workspace)
                bn3.backward(rows: outRows, stores, input: t2, gradOutput: t1, gradInput: t2)
                ready.complete(bn3.range)
            }
            conv3.backward(n, stores, input: rebuilt, gradOutput: t2, gradInput: free, workspace: workspace)
            ready.complete(conv3.range)
            d2 = free; other = t2
        }
        bn2.backwardReLU(rows: outRows, stores, input: c2, gradOutput: d2, gradInput: other)
        ready.complete(bn2.range)
        bn1.recomputeReLU(rows: inRows, stores, input: c1, output: rebuilt)
        conv2.backward(n, stores, input: rebuilt, gradOutput: other, gradInput: d2, workspace: workspace)
        ready.complete(conv2.range)
        bn1.backwardReLU(rows: inRows, stores, input: c1, gradOutput: d2, gradInput: other)
        ready.complete(bn1.range)
        // conv1 (1x1) adds its input gradient onto the shortcut's in its GEMM.
        conv1.backward(n, stores, input: x, gradOutput: other, gradInput: inputGradient, workspace: workspace, accumulate: true)
        ready.complete(conv1.range)
        return inputGradient
    }

    /// A 1x1 conv and the BatchNorm after it, backward as one (`pointwiseConvBatchNormBackward`),
    /// timed as a 1x1 convolution (its time is GEMMs but for two passes over the rows).
    private func foldedBackward(_ rows: Int, _ stores: StoreBases, conv: Conv, bn: BatchNorm, input: UnsafePointer<Float>,
                                gradOutput: UnsafePointer<Float>, sumG: [Double], gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.conv1x1) {
            pointwiseConvBatchNormBackward(
                rows: rows, inChannels: conv.shape.inChannels, outChannels: conv.shape.outChannels, input: input,
                weight: stores.values + conv.weight, gradOutput: gradOutput, sumG: sumG, gamma: stores.values + bn.gamma,
                saveMean: bn.saveMean, saveInvStd: bn.saveInvStd, gradGamma: stores.grads + bn.gamma,
                gradBeta: stores.grads + bn.beta, gradWeight: stores.grads + conv.weight, gradInput: gradInput,
                reducer: stores.batchNormReducer)
        }
    }
}
