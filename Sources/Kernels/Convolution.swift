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

    /// Floats of scratch space `conv2DForward`/`conv2DBackward` need (im2col
    /// columns); 0 for a 1x1 stride-1 convolution, which is a plain GEMM.
    public var workspaceCount: Int {
        fatalError("TODO(kernels)")
    }
}

/// output[N,oh,ow,Cout] = conv(input[N,H,W,Cin], weight[Cout,k,k,Cin]) + bias.
public func conv2DForward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
    workspace: UnsafeMutablePointer<Float>?
) {
    fatalError("TODO(kernels)")
}

/// gradWeight += dL/dW, gradBias += dL/db, gradInput = dL/dx (skipped when nil).
public func conv2DBackward(
    _ s: Conv2DShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>?,
    gradWeight: UnsafeMutablePointer<Float>, gradBias: UnsafeMutablePointer<Float>?,
    workspace: UnsafeMutablePointer<Float>?
) {
    fatalError("TODO(kernels)")
}

/// Converts a conv weight from PyTorch's OIHW to the internal OHWI layout.
public func convWeightOIHWToOHWI(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                 out: Int, in inC: Int, kernel: Int) {
    fatalError("TODO(kernels)")
}

/// Converts a conv weight from the internal OHWI layout to PyTorch's OIHW.
public func convWeightOHWIToOIHW(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>,
                                 out: Int, in inC: Int, kernel: Int) {
    fatalError("TODO(kernels)")
}
