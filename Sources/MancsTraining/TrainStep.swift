import MancsModel

/// The loss settings of a training step (docs/method.md §2).
public struct LossSettings: Sendable, Equatable, Codable {
    public var margin: Float = 0.5
    public var gamma: Float = 2
    public var lambdaRank: Float = 1
    public var lambdaCls: Float = 1
    public var lambdaAtt: Float = 0.2
    public init() {}
    public init(margin: Float, gamma: Float, lambdaRank: Float, lambdaCls: Float, lambdaAtt: Float) {
        self.margin = margin; self.gamma = gamma
        self.lambdaRank = lambdaRank; self.lambdaCls = lambdaCls; self.lambdaAtt = lambdaAtt
    }
}

/// The losses of one step (unweighted), their weighted total, and the negative
/// the triplet loss used for each (anchor, positive) pair.
public struct LossBreakdown: Sendable {
    public var rank: Float
    public var cls: Float
    public var att: Float
    /// lambdaRank * rank + lambdaCls * cls + lambdaAtt * att.
    public var total: Float
    public var pairs: [(anchor: Int, positive: Int)]
    public var negatives: [Int]
}

/// One forward + losses + backward of a Mancs network. Owns the gradient
/// buffers of the three outputs (allocated once for the network's maximum batch).
/// Clipping, the gradient allreduce and the optimiser step are the caller's.
public final class TrainStep: @unchecked Sendable {
    public let network: MancsNetwork
    public var losses: LossSettings
    private let gradFRank: UnsafeMutablePointer<Float>
    private let gradCls: UnsafeMutablePointer<Float>
    private let gradAtt: UnsafeMutablePointer<Float>

    public init(network: MancsNetwork, losses: LossSettings = LossSettings()) {
        self.network = network
        self.losses = losses
        let c = network.config
        gradFRank = .allocate(capacity: network.maxBatch * c.resolvedEmbeddingDim)
        gradCls = .allocate(capacity: network.maxBatch * c.numClasses)
        gradAtt = .allocate(capacity: network.maxBatch * c.numClasses)
    }

    deinit {
        gradFRank.deallocate(); gradCls.deallocate(); gradAtt.deallocate()
    }

    /// Runs a training-mode forward on `images` (NHWC, normalised), the three
    /// losses and the backward. Gradients are zeroed first unless
    /// `accumulate` is set; `onGradientsReady` is passed to the backward (see
    /// `MancsNetwork.backward`). With `group`, `images` are this replica's shard
    /// of a batch the group shares and the triplet loss is that batch's (see
    /// `sharedBatchTripletLoss`); the focal and attention losses are this shard's
    /// means, which the gradient average over equal shards turns into the batch's.
    @discardableResult
    public func run<R: RandomNumberGenerator>(
        images: UnsafePointer<Float>, labels: [Int], sampling: NegativeSampling, rng: inout R,
        accumulate: Bool = false, group: ReplicaBatchGroup? = nil,
        onGradientsReady: ((Range<Int>) -> Void)? = nil
    ) -> LossBreakdown {
        let n = labels.count, c = network.config
        precondition(n >= 2 && n <= network.maxBatch, "batch of \(n) labels outside 2...\(network.maxBatch)")
        precondition(labels.allSatisfy { (0..<c.numClasses).contains($0) }, "labels must lie in 0..<\(c.numClasses)")
        if !accumulate { network.parameters.zeroGradients() }
        let out = network.forward(images: images, batch: n, training: true)
        let triplet: TripletResult
        if let group {
            triplet = sharedBatchTripletLoss(features: out.fRank, count: n, dim: c.resolvedEmbeddingDim, labels: labels,
                                             group: group, margin: losses.margin, sampling: sampling, rng: &rng,
                                             gradFeatures: gradFRank, gradScale: losses.lambdaRank)
        } else {
            triplet = tripletLoss(features: out.fRank, count: n, dim: c.resolvedEmbeddingDim, labels: labels,
                                  margin: losses.margin, sampling: sampling, rng: &rng, gradFeatures: gradFRank,
                                  gradScale: losses.lambdaRank)
        }
        let cls = focalLoss(logits: out.clsLogits, count: n, classes: c.numClasses, labels: labels, gamma: losses.gamma,
                            gradLogits: gradCls, gradScale: losses.lambdaCls)
        let att = attentionLoss(logits: out.attLogits, count: n, classes: c.numClasses, labels: labels,
                                gradLogits: gradAtt, gradScale: losses.lambdaAtt)
        network.backward(gradFRank: gradFRank, gradClsLogits: gradCls, gradAttLogits: gradAtt,
                         onGradientsReady: onGradientsReady)
        let total = losses.lambdaRank * triplet.loss + losses.lambdaCls * cls + losses.lambdaAtt * att
        return LossBreakdown(rank: triplet.loss, cls: cls, att: att, total: total, pairs: triplet.pairs,
                             negatives: triplet.negatives)
    }
}
