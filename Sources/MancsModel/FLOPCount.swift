import Kernels

/// Analytic floating-point operations of one training step, per image.
///
/// Counted as is standard: every convolution and fully connected layer costs
/// 2 FLOPs per multiply-accumulate (MAC = outH * outW * Cout * k * k * Cin for a
/// conv, in * out for a linear layer); BatchNorm, activations, pooling, losses
/// and the optimiser are not counted (they are O(activations), not O(MACs)).
/// Backward costs two forwards (the gradient with respect to the input and the
/// one with respect to the weights), except that the stem convolution's input
/// gradient is never computed (the images need none): backward = 2 * forward -
/// the stem's forward.
public struct StepFLOPs: Sendable, Equatable {
    public var forward: Double
    public var backward: Double
    public var total: Double { forward + backward }
}

extension MancsNetwork {
    /// FLOPs per image of one training step (forward + backward) of this network.
    public var stepFLOPsPerImage: StepFLOPs {
        func macs(_ s: Conv2DShape) -> Double {
            Double(s.outHeight * s.outWidth * s.outChannels * s.kernel * s.kernel * s.inChannels)
        }
        let shapes = convolutionShapes
        let convMACs = shapes.reduce(0) { $0 + macs($1) }
        let linearMACs = linearLayers.reduce(0.0) { $0 + Double($1.inFeatures * $1.outFeatures) }
        let forward = 2 * (convMACs + linearMACs)
        let stemInputGradient = 2 * macs(shapes[0])
        return StepFLOPs(forward: forward, backward: 2 * forward - stemInputGradient)
    }
}
