import Kernels

/// Shared state while a network is being built: the two store layouts, the
/// arena, and the largest activation / workspace seen (the size of the shared
/// gradient scratch buffers and the conv workspace).
final class NetworkBuilder {
    var params = StoreLayout()
    var buffers = StoreLayout()
    let arena = Arena()
    let config: MancsConfig
    let maxBatch: Int
    private(set) var maxActivationPerImage = 0
    private(set) var maxWorkspace = 0

    init(config: MancsConfig, maxBatch: Int) {
        self.config = config
        self.maxBatch = maxBatch
    }

    /// An activation buffer of `perImage` floats per image, for the maximum batch.
    func activation(_ perImage: Int) -> UnsafeMutablePointer<Float> {
        maxActivationPerImage = max(maxActivationPerImage, perImage)
        return arena.floats(perImage * maxBatch)
    }

    func conv(_ name: String, height: Int, width: Int, in inC: Int, out outC: Int, kernel: Int, stride: Int,
              padding: Int, bias: Bool = false) -> Conv {
        let s = Conv2DShape(batch: maxBatch, inHeight: height, inWidth: width, inChannels: inC, outChannels: outC,
                            kernel: kernel, stride: stride, padding: padding)
        maxWorkspace = max(maxWorkspace, s.workspaceCount)
        return Conv(&params, name, s, bias: bias)
    }

    func batchNorm(_ name: String, channels: Int) -> BatchNorm {
        BatchNorm(&params, &buffers, arena, name, channels: channels, config: config)
    }
}

/// Four gradient scratch buffers of the largest activation size, and the conv
/// workspace, shared by every layer's backward.
struct Scratch {
    let g: [UnsafeMutablePointer<Float>]
    let workspace: UnsafeMutablePointer<Float>
}

/// torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), with an
/// optional 1x1 projection shortcut and, for the very last block, a PReLU in
/// place of the final ReLU.
final class Bottleneck {
    let conv1: Conv, bn1: BatchNorm, conv2: Conv, bn2: BatchNorm, conv3: Conv, bn3: BatchNorm
    let downsample: (conv: Conv, bn: BatchNorm)?
    /// Offset of the per-channel PReLU weight.
    let prelu: Int?
    let inHeight: Int, inWidth: Int, inChannels: Int
    let outHeight: Int, outWidth: Int, outChannels: Int

    // Saved activations (maximum batch). c* are conv outputs (BN inputs), b* BN
    // outputs after ReLU; `sum` is bn3 + shortcut, ReLU'd in place unless PReLU.
    private let c1, b1, c2, b2, c3, sum: UnsafeMutablePointer<Float>
    private let dc, db, preluOut: UnsafeMutablePointer<Float>?

    init(_ b: NetworkBuilder, _ name: String, height: Int, width: Int, inChannels: Int, planes: Int, stride: Int,
         lastPReLU: Bool) {
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
        prelu = lastPReLU ? b.params.add("\(name).prelu.weight", [out]) : nil

        c1 = b.activation(conv1.outPerImage); b1 = b.activation(conv1.outPerImage)
        c2 = b.activation(conv2.outPerImage); b2 = b.activation(conv2.outPerImage)
        c3 = b.activation(conv3.outPerImage); sum = b.activation(conv3.outPerImage)
        dc = downsample == nil ? nil : b.activation(conv3.outPerImage)
        db = downsample == nil ? nil : b.activation(conv3.outPerImage)
        preluOut = lastPReLU ? b.activation(conv3.outPerImage) : nil
    }

    /// The block's output (valid after forward).
    var output: UnsafeMutablePointer<Float> { preluOut ?? sum }
    var outPerImage: Int { outHeight * outWidth * outChannels }
    var inPerImage: Int { inHeight * inWidth * inChannels }

    // MARK: Forward

    func forward(_ n: Int, _ t: StoreBases, training: Bool, input x: UnsafePointer<Float>, _ s: Scratch) {
        let inRows = n * inHeight * inWidth, outRows = n * outHeight * outWidth
        conv1.forward(n, t, input: x, output: c1, workspace: s.workspace)
        bn1.forward(rows: inRows, t, training: training, input: c1, output: b1)
        t.timed(.activation) {
            reluForward(count: inRows * bn1.channels, input: b1, output: b1)
        }
        conv2.forward(n, t, input: b1, output: c2, workspace: s.workspace)
        bn2.forward(rows: outRows, t, training: training, input: c2, output: b2)
        t.timed(.activation) {
            reluForward(count: outRows * bn2.channels, input: b2, output: b2)
        }
        conv3.forward(n, t, input: b2, output: c3, workspace: s.workspace)
        bn3.forward(rows: outRows, t, training: training, input: c3, output: sum)
        let count = outRows * outChannels
        if let (dconv, dbn) = downsample, let dc, let db {
            dconv.forward(n, t, input: x, output: dc, workspace: s.workspace)
            dbn.forward(rows: outRows, t, training: training, input: dc, output: db)
            t.timed(.elementwise) {
                add(count: count, sum, db, into: sum)
            }
        } else {
            t.timed(.elementwise) {
                add(count: count, sum, x, into: sum)
            }
        }
        if let prelu, let preluOut {
            t.timed(.activation) {
                preluForward(rows: outRows, channels: outChannels, input: sum, weight: t.values + prelu, output: preluOut)
            }
        } else {
            t.timed(.activation) {
                reluForward(count: count, input: sum, output: sum)
            }
        }
    }

    // MARK: Backward

    /// gradInput (overwritten) from gradOutput; t1, t2 are free scratch buffers.
    func backward(_ n: Int, _ t: StoreBases, input x: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>, t1: UnsafeMutablePointer<Float>, t2: UnsafeMutablePointer<Float>,
                  workspace: UnsafeMutablePointer<Float>, ready: GradientReadiness) {
        let inRows = n * inHeight * inWidth, outRows = n * outHeight * outWidth
        let count = outRows * outChannels
        // Final activation: t1 = d(sum).
        if let prelu {
            t.timed(.activation) {
                preluBackward(rows: outRows, channels: outChannels, input: sum, weight: t.values + prelu,
                              gradOutput: gradOutput, gradInput: t1, gradWeight: t.grads + prelu)
            }
            ready.complete(prelu..<(prelu + outChannels))
        } else {
            t.timed(.activation) {
                reluBackward(count: count, output: sum, gradOutput: gradOutput, gradInput: t1)
            }
        }
        // Shortcut: gradInput = d(shortcut input).
        if let (dconv, dbn) = downsample, let dc {
            dbn.backward(rows: outRows, t, input: dc, gradOutput: t1, gradInput: t2)
            ready.complete(dbn.range)
            dconv.backward(n, t, input: x, gradOutput: t2, gradInput: gradInput, workspace: workspace)
            ready.complete(dconv.range)
        } else {
            t.timed(.elementwise) { gradInput.update(from: t1, count: count) }
        }
        // Main path, last layer first.
        bn3.backward(rows: outRows, t, input: c3, gradOutput: t1, gradInput: t2)
        ready.complete(bn3.range)
        conv3.backward(n, t, input: b2, gradOutput: t2, gradInput: t1, workspace: workspace)
        ready.complete(conv3.range)
        t.timed(.activation) {
            reluBackward(count: outRows * bn2.channels, output: b2, gradOutput: t1, gradInput: t1)
        }
        bn2.backward(rows: outRows, t, input: c2, gradOutput: t1, gradInput: t2)
        ready.complete(bn2.range)
        conv2.backward(n, t, input: b1, gradOutput: t2, gradInput: t1, workspace: workspace)
        ready.complete(conv2.range)
        t.timed(.activation) {
            reluBackward(count: inRows * bn1.channels, output: b1, gradOutput: t1, gradInput: t1)
        }
        bn1.backward(rows: inRows, t, input: c1, gradOutput: t1, gradInput: t2)
        ready.complete(bn1.range)
        conv1.backward(n, t, input: x, gradOutput: t2, gradInput: t1, workspace: workspace)
        ready.complete(conv1.range)
        t.timed(.elementwise) {
            addInPlace(count: inRows * inChannels, t1, into: gradInput)
        }
    }
}
