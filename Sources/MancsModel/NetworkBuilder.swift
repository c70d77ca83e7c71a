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
    /// Largest activation rebuilt during backward instead of kept (floats per image).
    private(set) var maxRecomputePerImage = 0

    init(config: MancsConfig, maxBatch: Int) {
        self.config = config
        self.maxBatch = maxBatch
    }

    /// An activation buffer of `perImage` floats per image, for the maximum batch.
    func activation(_ perImage: Int) -> UnsafeMutablePointer<Float> {
        maxActivationPerImage = max(maxActivationPerImage, perImage)
        return arena.floats(perImage * maxBatch)
    }

    /// Notes an activation of `perImage` floats that lives only in the shared scratch
    /// buffers (`Scratch.g`), which must be large enough.
    func scratchActivation(_ perImage: Int) {
        maxActivationPerImage = max(maxActivationPerImage, perImage)
    }

    /// Notes an activation of `perImage` floats that backward rebuilds in `Scratch.recompute`.
    func recomputed(_ perImage: Int) {
        maxRecomputePerImage = max(maxRecomputePerImage, perImage)
    }

    func conv(_ name: String, height: Int, width: Int, in inC: Int, out outC: Int, kernel: Int, stride: Int,
              padding: Int, bias: Bool = false) -> Conv {
        let shape = Conv2DShape(batch: maxBatch, inHeight: height, inWidth: width, inChannels: inC, outChannels: outC,
                            kernel: kernel, stride: stride, padding: padding)
        let conv = Conv(&params, name, shape, bias: bias)
        maxWorkspace = max(maxWorkspace, shape.workspaceCount(conv.algorithm))
        return conv
    }

    func batchNorm(_ name: String, channels: Int) -> BatchNorm {
        return BatchNorm(&params, &buffers, arena, name, channels: channels, config: config)
    }
}
