import Kernels

// The parameter-free steps of the network: activations, pooling, residual adds,
// copies. Like the layers with parameters (`Conv`, `BatchNorm`, `Linear`,
// `PReLU`), each is one call that charges its time to its `LayerKind` when the
// network is profiled, so the blocks and the network call layers and these, and
// never a kernel or the profiler directly. Forward beside backward.

/// ReLU and sigmoid (`LayerKind.activation`), elementwise over `count` floats.
enum Activation {
    case relu, sigmoid

    func forward(_ stores: StoreBases, count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        stores.timed(.activation) {
            switch self {
            case .relu: reluForward(count: count, input: input, output: output)
            case .sigmoid: sigmoidForward(count: count, input: input, output: output)
            }
        }
    }

    /// From the forward's `output` (both derivatives are functions of it).
    func backward(_ stores: StoreBases, count: Int, output: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.activation) {
            switch self {
            case .relu: reluBackward(count: count, output: output, gradOutput: gradOutput, gradInput: gradInput)
            case .sigmoid: sigmoidBackward(count: count, output: output, gradOutput: gradOutput, gradInput: gradInput)
            }
        }
    }
}

/// Per-channel PReLU over [rows, channels], with its weight in the parameter store.
struct PReLU {
    let channels: Int
    /// Offset of the per-channel weight.
    let weight: Int
    var range: Range<Int> { weight..<(weight + channels) }

    init(_ layout: inout StoreLayout, _ name: String, channels: Int) {
        self.channels = channels
        weight = layout.add("\(name).weight", [channels])
    }

    func forward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        stores.timed(.activation) {
            preluForward(rows: rows, channels: channels, input: input, weight: stores.values + weight, output: output)
        }
    }

    /// `gradInput` must not alias `gradOutput`.
    func backward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.activation) {
            preluBackward(rows: rows, channels: channels, input: input, weight: stores.values + weight,
                          gradOutput: gradOutput, gradInput: gradInput, gradWeight: stores.grads + weight)
        }
    }
}

/// Max-pool and global average pool (`LayerKind.pooling`).
enum Pooling {
    static func maxPool3x3s2Forward(_ stores: StoreBases, batch: Int, height: Int, width: Int, channels: Int,
                                    input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                    argmax: UnsafeMutablePointer<Int32>) {
        stores.timed(.pooling) {
            Kernels.maxPool3x3s2Forward(batch: batch, height: height, width: width, channels: channels, input: input,
                                        output: output, argmax: argmax)
        }
    }

    static func maxPool3x3s2Backward(_ stores: StoreBases, batch: Int, height: Int, width: Int, channels: Int,
                                     gradOutput: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                                     gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.pooling) {
            Kernels.maxPool3x3s2Backward(batch: batch, height: height, width: width, channels: channels,
                                         gradOutput: gradOutput, argmax: argmax, gradInput: gradInput)
        }
    }

    static func globalAvgPoolForward(_ stores: StoreBases, batch: Int, spatial: Int, channels: Int,
                                     input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        stores.timed(.pooling) {
            Kernels.globalAvgPoolForward(batch: batch, spatial: spatial, channels: channels, input: input, output: output)
        }
    }

    static func globalAvgPoolBackward(_ stores: StoreBases, batch: Int, spatial: Int, channels: Int,
                                      gradOutput: UnsafePointer<Float>, gradInput: UnsafeMutablePointer<Float>) {
        stores.timed(.pooling) {
            Kernels.globalAvgPoolBackward(batch: batch, spatial: spatial, channels: channels, gradOutput: gradOutput,
                                          gradInput: gradInput)
        }
    }
}

/// Residual adds, the attention combine, concat/split and copies (`LayerKind.elementwise`).
enum Elementwise {
    static func addInPlace(_ stores: StoreBases, count: Int, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        stores.timed(.elementwise) { Kernels.addInPlace(count: count, x, into: y) }
    }

    static func copy(_ stores: StoreBases, count: Int, _ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>) {
        stores.timed(.elementwise) { Kernels.copy(count: count, src, into: dst) }
    }

    static func concatColumns(_ stores: StoreBases, rows: Int, parts: [UnsafePointer<Float>], widths: [Int],
                              output: UnsafeMutablePointer<Float>) {
        stores.timed(.elementwise) { Kernels.concatColumns(rows: rows, parts: parts, widths: widths, output: output) }
    }

    static func splitColumns(_ stores: StoreBases, rows: Int, input: UnsafePointer<Float>, widths: [Int],
                             parts: [UnsafeMutablePointer<Float>]) {
        stores.timed(.elementwise) { Kernels.splitColumns(rows: rows, input: input, widths: widths, parts: parts) }
    }

    static func attentionCombineForward(_ stores: StoreBases, count: Int, f: UnsafePointer<Float>,
                                        m: UnsafePointer<Float>, attended: UnsafeMutablePointer<Float>?,
                                        output: UnsafeMutablePointer<Float>) {
        stores.timed(.elementwise) {
            Kernels.attentionCombineForward(count: count, f: f, m: m, attended: attended, output: output)
        }
    }

    static func attentionCombineBackward(_ stores: StoreBases, count: Int, f: UnsafePointer<Float>,
                                         m: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                                         gradAttended: UnsafePointer<Float>?, gradF: UnsafeMutablePointer<Float>,
                                         gradM: UnsafeMutablePointer<Float>) {
        stores.timed(.elementwise) {
            Kernels.attentionCombineBackward(count: count, f: f, m: m, gradOutput: gradOutput,
                                             gradAttended: gradAttended, gradF: gradF, gradM: gradM)
        }
    }
}
