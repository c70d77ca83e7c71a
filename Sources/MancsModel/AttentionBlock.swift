import Kernels

/// The fully attentional block on a stage's output F [N,H,W,C]:
/// M = sigmoid(conv1x1_b(relu(conv1x1_a(F)))), A = F * M, output F * M + F.
/// GAP(A) feeds the att head; M is kept for comparison and visualisation.
final class AttentionBlock {
    let stage: Int
    let conv1: Conv, conv2: Conv
    let height: Int, width: Int, channels: Int

    private let hidden: UnsafeMutablePointer<Float>   // relu(conv1(F)) [N,H,W,C/r]
    let mask: UnsafeMutablePointer<Float>             // M [N,H,W,C]
    let output: UnsafeMutablePointer<Float>           // F*M + F [N,H,W,C]
    let pooled: UnsafeMutablePointer<Float>           // GAP(A) [N,C]
    /// Gradient of `pooled`, filled by the att head's backward.
    let gradPooled: UnsafeMutablePointer<Float>

    init(_ b: NetworkBuilder, stage: Int, height: Int, width: Int, channels: Int) {
        self.stage = stage
        self.height = height; self.width = width; self.channels = channels
        let h = max(channels / b.config.reduction, 1)
        conv1 = b.conv("attention.layer\(stage).conv1", height: height, width: width, in: channels, out: h, kernel: 1,
                       stride: 1, padding: 0, bias: true)
        conv2 = b.conv("attention.layer\(stage).conv2", height: height, width: width, in: h, out: channels, kernel: 1,
                       stride: 1, padding: 0, bias: true)
        hidden = b.activation(height * width * h)
        b.recomputed(height * width * channels)  // backward's t1 is Scratch.recompute
        mask = b.activation(height * width * channels)
        output = b.activation(height * width * channels)
        pooled = b.arena.floats(b.maxBatch * channels)
        gradPooled = b.arena.floats(b.maxBatch * channels)
    }

    var range: Range<Int> { conv1.range.lowerBound..<conv2.range.upperBound }

    // MARK: Forward

    /// `scratch` holds at least one activation of this size.
    func forward(_ n: Int, _ stores: StoreBases, input f: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>,
                 workspace: UnsafeMutablePointer<Float>) {
        let spatial = height * width
        conv1.forward(n, stores, input: f, output: hidden, workspace: workspace)
        Activation.relu.forward(stores, count: n * spatial * conv1.shape.outChannels, input: hidden, output: hidden)
        conv2.forward(n, stores, input: hidden, output: scratch, workspace: workspace)
        Activation.sigmoid.forward(stores, count: n * spatial * channels, input: scratch, output: mask)
        Elementwise.attentionCombineForward(stores, count: n * spatial * channels, f: f, m: mask, attended: scratch, output: output)
        Pooling.globalAvgPoolForward(stores, batch: n, spatial: spatial, channels: channels, input: scratch, output: pooled)
    }

    // MARK: Backward

    /// gradInput (overwritten) = d/dF from gradOutput and `gradPooled`; t1, t2 are free
    /// scratch buffers of at least this block's activation size.
    func backward(_ n: Int, _ stores: StoreBases, input f: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>, t1: UnsafeMutablePointer<Float>, t2: UnsafeMutablePointer<Float>,
                  workspace: UnsafeMutablePointer<Float>, ready: GradientReadiness) {
        let spatial = height * width, count = n * spatial * channels
        Pooling.globalAvgPoolBackward(stores, batch: n, spatial: spatial, channels: channels, gradOutput: gradPooled, gradInput: t1)
        Elementwise.attentionCombineBackward(stores, count: count, f: f, m: mask, gradOutput: gradOutput, gradAttended: t1,
                                             gradF: gradInput, gradM: t2)
        Activation.sigmoid.backward(stores, count: count, output: mask, gradOutput: t2, gradInput: t1)
        conv2.backward(n, stores, input: hidden, gradOutput: t1, gradInput: t2, workspace: workspace)
        ready.complete(conv2.range)
        Activation.relu.backward(stores, count: n * spatial * conv1.shape.outChannels, output: hidden, gradOutput: t2, gradInput: t2)
        // conv1 (1x1) adds its input gradient onto the combine's in its GEMM, as in Bottleneck.
        conv1.backward(n, stores, input: f, gradOutput: t2, gradInput: gradInput, workspace: workspace, accumulate: true)
        ready.complete(conv1.range)
    }
}
