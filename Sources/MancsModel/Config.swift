/// Every architectural setting of a Mancs network (docs/method.md §1).
/// Defaults are ResNet-50 Mancs at 256x128 for Market-1501.
public struct MancsConfig: Codable, Sendable, Equatable {
    public var baseWidth: Int = 64
    public var blocks: [Int] = [3, 4, 6, 3]
    public var lastStride: Int = 2
    public var numClasses: Int = 751
    public var attentionStages: [Int] = [2, 3, 4]
    public var reduction: Int = 16
    /// 0 means "the feature dimension" (4 * 8 * baseWidth), as in the reference.
    public var embeddingDim: Int = 0
    /// 0 means "the feature dimension".
    public var clsHidden: Int = 0
    public var height: Int = 256
    public var width: Int = 128
    public var bnMomentum: Float = 0.1
    public var bnEps: Float = 1e-5

    public init() {}

    /// Channels out of the final stage: D = 4 * 8 * w (2048 for ResNet-50).
    public var featureDim: Int { baseWidth * 8 * 4 }
    public var resolvedEmbeddingDim: Int { embeddingDim > 0 ? embeddingDim : featureDim }
    public var resolvedClsHidden: Int { clsHidden > 0 ? clsHidden : featureDim }
    /// Output channels of stage s (1...4): 4 * w * 2^(s-1).
    public func stageChannels(_ s: Int) -> Int { baseWidth * (1 << (s - 1)) * 4 }
    /// Width of the attention head's input: the summed channels of the FAB stages.
    public var attentionDim: Int { attentionStages.reduce(0) { $0 + stageChannels($1) } }

    /// Throws a readable error for settings the network cannot be built with.
    public func validate() throws {
        func bad(_ s: String) -> MancsConfigError { MancsConfigError(message: s) }
        guard baseWidth >= 1 else { throw bad("base width must be at least 1, got \(baseWidth)") }
        guard blocks.count == 4, blocks.allSatisfy({ $0 >= 1 }) else {
            throw bad("blocks must be four counts of at least 1 (e.g. 3,4,6,3), got \(blocks)")
        }
        guard lastStride == 1 || lastStride == 2 else { throw bad("last stride must be 1 or 2, got \(lastStride)") }
        guard attentionStages.allSatisfy({ (1...4).contains($0) }), Set(attentionStages).count == attentionStages.count,
              attentionStages == attentionStages.sorted() else {
            throw bad("attention stages must be distinct stages among 1,2,3,4 in increasing order, got \(attentionStages)")
        }
        guard !attentionStages.isEmpty else { throw bad("at least one attention stage is needed (the att head reads them)") }
        guard reduction >= 1 else { throw bad("reduction must be at least 1, got \(reduction)") }
        guard numClasses >= 2 else { throw bad("the number of classes must be at least 2, got \(numClasses)") }
        guard height >= 32, width >= 16 else { throw bad("input must be at least 32x16, got \(height)x\(width)") }
        // Upper bounds: an architecture read from a file someone else wrote must
        // not ask for 10^8 blocks or a terabyte classifier.
        guard baseWidth <= 1024, blocks.allSatisfy({ $0 <= 64 }) else {
            throw bad("base width at most 1024 and blocks at most 64 per stage, got \(baseWidth) and \(blocks)")
        }
        guard numClasses <= 1_000_000 else { throw bad("the number of classes must be at most 1,000,000, got \(numClasses)") }
        guard reduction <= 4096, (0...65_536).contains(embeddingDim), (0...65_536).contains(clsHidden) else {
            throw bad("reduction, embedding dim and cls hidden width out of range: \(reduction), \(embeddingDim), \(clsHidden)")
        }
        guard height <= 4096, width <= 4096 else { throw bad("input must be at most 4096x4096, got \(height)x\(width)") }
    }
}

public struct MancsConfigError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
