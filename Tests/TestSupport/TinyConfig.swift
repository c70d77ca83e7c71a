import MancsModel

/// A network small enough for finite differences: every stage, two FABs, PReLU,
/// projection and identity shortcuts.
public func tinyConfig() -> MancsConfig {
    var c = MancsConfig()
    c.baseWidth = 4
    c.blocks = [1, 2, 1, 1]
    c.lastStride = 1
    c.attentionStages = [2, 4]
    c.reduction = 4
    c.numClasses = 3
    c.embeddingDim = 8
    c.clsHidden = 12
    c.height = 64
    c.width = 32
    return c
}
