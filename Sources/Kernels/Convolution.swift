/// Shape of a 2-D convolution over an NHWC batch with a square kernel.
public struct Conv2DShape: Sendable, Equatable, Hashable {
    public var batch: Int
    public var inHeight: Int
    public var inWidth: Int
    public var inChannels: Int
    public var outChannels: Int
    public var kernel: Int
    public var stride: Int
    public var padding: Int

    public init(batch: Int, inHeight: Int, inWidth: Int, inChannels: Int, outChannels: Int,
                kernel: Int, stride: Int, padding: Int) {
        self.batch = batch; self.inHeight = inHeight; self.inWidth = inWidth
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernel = kernel; self.stride = stride; self.padding = padding
    }

    public var outHeight: Int { (inHeight + 2 * padding - kernel) / stride + 1 }
    public var outWidth: Int { (inWidth + 2 * padding - kernel) / stride + 1 }
    public var inputCount: Int { batch * inHeight * inWidth * inChannels }
    public var outputCount: Int { batch * outHeight * outWidth * outChannels }
    public var weightCount: Int { outChannels * kernel * kernel * inChannels }

    /// True for a 1x1, stride-1, unpadded convolution: the input already is the
    /// column matrix, so the convolution is one plain GEMM and needs no workspace.
    public var isPointwise: Bool { kernel == 1 && stride == 1 && padding == 0 }

    /// Floats per image of the im2col column matrix: outHeight * outWidth rows of k*k*Cin.
    public var columnCountPerImage: Int { outHeight * outWidth * kernel * kernel * inChannels }

    /// Images processed per im2col chunk: as many as fit in `workspaceBudget` floats,
    /// but enough for `minimumChunkRows` GEMM rows; at least one, at most the batch.
    public var imagesPerChunk: Int {
        let byBudget = Conv2DShape.workspaceBudget / max(1, columnCountPerImage)
        let rowsPerImage = max(1, outHeight * outWidth)
        let forRows = (Conv2DShape.minimumChunkRows + rowsPerImage - 1) / rowsPerImage
        return max(1, min(batch, max(byBudget, forRows)))
    }

    /// Column floats a chunk aims to stay under (1 Mi floats = 4 MiB), so the columns
    /// are still in cache when the GEMM reads them (measured best for ResNet-50 shapes).
    public static let workspaceBudget = 1 << 20

    /// Fewest GEMM rows per chunk: small late-stage maps (e.g. 8x4) take several images
    /// per chunk even past the budget, so the GEMM is not starved of rows.
    public static let minimumChunkRows = 512

    /// Floats of scratch space `conv2DForward`/`conv2DBackward` need: the im2col
    /// column matrix of one chunk of `imagesPerChunk` images (the same buffer also
    /// holds the column gradient in backward). 0 for a 1x1 stride-1 convolution,
    /// which is a plain GEMM. One buffer of the largest workspaceCount may be shared
    /// by every convolution run in sequence.
    public var workspaceCount: Int {
        isPointwise ? 0 : imagesPerChunk * columnCountPerImage
    }

    /// Stops with a message naming `kernel` when the shape is not a usable convolution.
    func validate(_ kernelName: String) {
        require(batch >= 0 && inChannels > 0 && outChannels > 0 && kernel > 0 && stride > 0 && padding >= 0,
                "\(kernelName): invalid shape (\(summary))")
        require(outHeight > 0 && outWidth > 0, "\(kernelName): empty output for \(summary)")
    }

    /// Error message context.
    var summary: String {
        "conv \(kernel)x\(kernel)/\(stride) pad \(padding), \(inChannels)->\(outChannels), input \(batch)x\(inHeight)x\(inWidth)"
    }
}

// MARK: Forward

/// output[N,oh,ow,Cout] = conv(input[N,H,W,Cin], weight[Cout,k,k,Cin]) + bias.
/// `workspace` holds at least `s.workspaceCount(algorithm)` floats (may be nil when
/// that is 0). `.winograd` applies only where `s.supportsWinograd`; elsewhere im2col + GEMM runs.
public func conv2DForward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>?, algorithm: ConvAlgorithm = .gemm
) {
    if algorithm == .winograd && s.supportsWinograd {
        s.validate("conv2DForward")
        guard s.batch > 0 else { return }
        guard let workspace else { fatalError("conv2DForward: \(s.summary) needs a workspace of \(s.workspaceCount(algorithm)) floats, got nil") }
        if let tiling = s.winogradBlockedTiles {
            winogradConv3x3Blocked(s, tiling: tiling, input: input, weight: weight, flipped: false, bias: bias, output: output,
                                   workspace: workspace)
        } else {
            winogradConv3x3(s, input: input, weight: weight, flipped: false, bias: bias, output: output,
                            workspace: workspace, imagesPerChunk: s.winogradImagesPerChunk)
        }
        return
    }
    conv2DForward(s, input: input, weight: weight, bias: bias, output: output, workspace: workspace,
                  imagesPerChunk: s.imagesPerChunk)
}

/// `conv2DForward` with an explicit chunk size (tests use it to exercise chunking);
/// the workspace then holds `imagesPerChunk * s.columnCountPerImage` floats.
func conv2DForward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>?, imagesPerChunk chunk: Int
) {
    s.validate("conv2DForward")
    let rowsPerImage = s.outHeight * s.outWidth
    let K = s.kernel * s.kernel * s.inChannels
    let cout = s.outChannels
    guard s.batch > 0 else { return }
    if let bias {
        parallelRanges(s.batch * rowsPerImage, workPerItem: cout) { rows in
            for r in rows { (output + r &* cout).update(from: bias, count: cout) }
        }
    }
    let beta: Float = bias == nil ? 0 : 1
    if s.isPointwise {
        sgemm(transA: false, transB: true, m: s.batch * rowsPerImage, n: cout, k: K,
              alpha: 1, a: input, lda: K, b: weight, ldb: K, beta: beta, c: output, ldc: cout)
        return
    }
    require(chunk > 0, "conv2DForward: imagesPerChunk must be positive, got \(chunk)")
    guard let col = workspace else { fatalError("conv2DForward: \(s.summary) needs a workspace of \(s.workspaceCount) floats, got nil") }
    let imageIn = s.inHeight * s.inWidth * s.inChannels
    var n0 = 0
    while n0 < s.batch {
        let images = min(chunk, s.batch - n0)
        im2col(s, images: images, input: input + n0 * imageIn, col: col)
        sgemm(transA: false, transB: true, m: images * rowsPerImage, n: cout, k: K,
              alpha: 1, a: col, lda: K, b: weight, ldb: K,
              beta: beta, c: output + n0 * rowsPerImage * cout, ldc: cout)
        n0 += images
    }
}

// MARK: Backward

/// gradWeight += dL/dW, gradBias += dL/db, gradInput = dL/dx (skipped when nil;
/// with `accumulateGradInput`, gradInput += dL/dx: a block's input gradient summed
/// with its shortcut's in the GEMM instead of a separate pass; not with Winograd).
/// `workspace` and `algorithm` as for `conv2DForward`; with `.winograd` both the
/// input and the weight gradient run by Winograd.
public func conv2DBackward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
    gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?,
    workspace: UnsafeMutablePointer<Float>?, algorithm: ConvAlgorithm = .gemm, accumulateGradInput: Bool = false
) {
    let winograd = algorithm == .winograd && s.supportsWinograd
    require(!(winograd && accumulateGradInput), "conv2DBackward: accumulateGradInput is not available with Winograd (\(s.summary))")
    conv2DBackward(s, input: input, weight: weight, gradOutput: gradOutput, gradInput: gradInput,
                   gradWeight: gradWeight, gradBias: gradBias, workspace: workspace, imagesPerChunk: s.imagesPerChunk,
                   winogradImagesPerChunk: winograd ? s.winogradImagesPerChunk : nil, accumulateGradInput: accumulateGradInput)
}

/// `conv2DBackward` with an explicit chunk size, as for `conv2DForward`; with
/// `winogradImagesPerChunk` the input and weight gradients run by Winograd in chunks of that many images.
func conv2DBackward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
    gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?,
    workspace: UnsafeMutablePointer<Float>?, imagesPerChunk chunk: Int, winogradImagesPerChunk: Int? = nil,
    accumulateGradInput: Bool = false
) {
    s.validate("conv2DBackward")
    let rowsPerImage = s.outHeight * s.outWidth
    let K = s.kernel * s.kernel * s.inChannels
    let cout = s.outChannels
    guard s.batch > 0 else { return }
    if let gradBias { accumulateColumnSums(rows: s.batch * rowsPerImage, columns: cout, gradOutput, into: gradBias) }
    if let winogradChunk = winogradImagesPerChunk {
        guard let workspace else { fatalError("conv2DBackward: \(s.summary) needs a workspace, got nil") }
        if let tiling = s.winogradBlockedTiles {
            winogradWeightGradient3x3Blocked(s, tiling: tiling, input: input, gradOutput: gradOutput, gradWeight: gradWeight,
                                             workspace: workspace)
        } else {
            winogradWeightGradient3x3(s, input: input, gradOutput: gradOutput, gradWeight: gradWeight, workspace: workspace,
                                      imagesPerChunk: winogradChunk)
        }
        guard let gradInput else { return }
        // dL/dx is the convolution of dL/dy with the rotated, channel-swapped filter.
        if let tiling = s.channelsSwapped.winogradBlockedTiles {
            winogradConv3x3Blocked(s.channelsSwapped, tiling: tiling, input: gradOutput, weight: weight, flipped: true, bias: nil,
                                   output: gradInput, workspace: workspace)
        } else {
            winogradConv3x3(s.channelsSwapped, input: gradOutput, weight: weight, flipped: true, bias: nil,
                            output: gradInput, workspace: workspace, imagesPerChunk: winogradChunk)
        }
        return
    }
    if s.isPointwise {
        let rows = s.batch * rowsPerImage
        sgemm(transA: true, transB: false, m: cout, n: K, k: rows,
              alpha: 1, a: gradOutput, lda: cout, b: input, ldb: K, beta: 1, c: gradWeight, ldc: K)
        if let gradInput {
            sgemm(transA: false, transB: false, m: rows, n: K, k: cout,
                  alpha: 1, a: gradOutput, lda: cout, b: weight, ldb: K, beta: accumulateGradInput ? 1 : 0,
                  c: gradInput, ldc: K)
        }
        return
    }
    require(chunk > 0, "conv2DBackward: imagesPerChunk must be positive, got \(chunk)")
    guard let col = workspace else { fatalError("conv2DBackward: \(s.summary) needs a workspace of \(s.workspaceCount) floats, got nil") }
    let imageIn = s.inHeight * s.inWidth * s.inChannels
    var n0 = 0
    while n0 < s.batch {
        let images = min(chunk, s.batch - n0)
        let rows = images * rowsPerImage
        let gOut = gradOutput + n0 * rowsPerImage * cout
        im2col(s, images: images, input: input + n0 * imageIn, col: col)
        sgemm(transA: true, transB: false, m: cout, n: K, k: rows,
              alpha: 1, a: gOut, lda: cout, b: col, ldb: K, beta: 1, c: gradWeight, ldc: K)
        if let gradInput {
            // The columns are no longer needed: reuse the buffer for their gradient.
            sgemm(transA: false, transB: false, m: rows, n: K, k: cout,
                  alpha: 1, a: gOut, lda: cout, b: weight, ldb: K, beta: 0, c: col, ldc: K)
            col2imAccumulate(s, images: images, col: col, gradInput: gradInput + n0 * imageIn, zeroingFirst: !accumulateGradInput)
        }
        n0 += images
    }
}

// MARK: Weight layout

/// Converts a conv weight from PyTorch's OIHW to the internal OHWI layout.
public func convWeightOIHWToOHWI(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                 out: Int, in inC: Int, kernel: Int) {
    let kk = kernel * kernel
    for o in 0..<out {
        for i in 0..<inC {
            for p in 0..<kk { dst[(o &* kk &+ p) &* inC &+ i] = src[(o &* inC &+ i) &* kk &+ p] }
        }
    }
}

/// Converts a conv weight from the internal OHWI layout to PyTorch's OIHW.
public func convWeightOHWIToOIHW(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                 out: Int, in inC: Int, kernel: Int) {
    let kk = kernel * kernel
    for o in 0..<out {
        for i in 0..<inC {
            for p in 0..<kk { dst[(o &* inC &+ i) &* kk &+ p] = src[(o &* kk &+ p) &* inC &+ i] }
        }
    }
}
