import Kernels

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

    func forward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        stores.timed(.linear) {
            linearForward(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, input: input,
                          weight: stores.values + weight, bias: stores.values + bias, output: output)
        }
    }

    func backward(rows: Int, _ stores: StoreBases, input: UnsafePointer<Float>, gradOutput: UnsafePointer<Float>,
                  gradInput: UnsafeMutablePointer<Float>?) {
        stores.timed(.linear) {
            linearBackward(rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, input: input,
                           weight: stores.values + weight, gradOutput: gradOutput, gradInput: gradInput,
                           gradWeight: stores.grads + weight, gradBias: stores.grads + bias)
        }
    }
}
