import Kernels

// The layers with parameters know where their tensors sit in the flat stores
// (offsets, fixed at build time) and call the kernels; they own no activations
// (the blocks do). Forward beside backward. Each call is one profiled layer.

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

    func at(_ n: Int) -> Conv2DShape { var sized = shape; sized.batch = n; return sized }
    var kind: LayerKind { shape.isPointwise ? .conv1x1 : .convKxK }
    var outHeight: Int { shape.outHeight }
    var outWidth: Int { shape.outWidth }
    /// Output floats per image.
    var outPerImage: Int { shape.outHeight * shape.outWidth * shape.outChannels }

    func forward(_ n: Int, _ stores: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                 workspace: UnsafeMutablePointer<Float>) {
        stores.timed(kind) {
            conv2DForward(at(n), input: input, weight: stores.values + weight, bias: bias.map { UnsafePointer(stores.values + $0) },
                          output: output, workspace: workspace, algorithm: algorithm)
        }
    }

    /// With `accumulate`, gradInput += dL/dx (see `conv2DBackward`).
    func backward(_ n: Int, _ stores: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>?, workspace: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        stores.timed(kind) {
            conv2DBackward(at(n), input: input, weight: stores.values + weight, gradOutput: gradOutput, gradInput: gradInput,
                           gradWeight: stores.grads + weight, gradBias: bias.map { stores.grads + $0 }, workspace: workspace,
                           algorithm: algorithm, accumulateGradInput: accumulate)
        }
    }
}
