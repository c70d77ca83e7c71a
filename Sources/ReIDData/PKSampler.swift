// MARK: PK identity sampling

import DeterministicRandom

/// One image of a batch: which image, its label, and the key of its augmentation.
public struct PKSlot: Sendable, Equatable {
    /// Index into the training split's `images`.
    public var imageIndex: Int
    public var label: Int
    /// Key for `ImageTransform.training(_:key:)`, from (seed, epoch, batch, global slot).
    public var augmentationKey: UInt64
}

/// A rank's share of one global batch: `identities` x `imagesPerIdentity` slots,
/// grouped by identity (K consecutive slots share a label).
public struct PKBatch: Sendable, Equatable {
    public var epoch: Int
    public var index: Int
    public var slots: [PKSlot]
}

/// A sampler configuration that cannot work.
public struct SamplerError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

/// Draws global batches of P identities x K images as a pure function of
/// (seed, epoch, batch): each epoch permutes the identities with a generator
/// keyed by (seed, epoch) and takes P at a time (batches per epoch =
/// floor(identities / P)); each identity's K images are drawn without
/// replacement (with replacement when it has fewer than K) keyed by
/// (seed, epoch, batch, identity slot). Rank r of n keeps identities
/// [r*P/n, (r+1)*P/n) of every batch. Any (epoch, batch) can be asked for
/// directly, so resuming replays nothing.
public struct PKSampler: Sendable {
    public let identitiesPerBatch: Int   // P
    public let imagesPerIdentity: Int    // K
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    /// Image indices of each label, ascending.
    public let imagesOfLabel: [[Int]]

    public var identityCount: Int { imagesOfLabel.count }
    public var batchesPerEpoch: Int { identityCount / identitiesPerBatch }
    public var localIdentities: Int { identitiesPerBatch / worldSize }
    public var localBatchSize: Int { localIdentities * imagesPerIdentity }
    public var globalBatchSize: Int { identitiesPerBatch * imagesPerIdentity }

    /// `labels[i]` is the training label (0..<classes) of image i.
    public init(labels: [Int], p: Int, k: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1) throws {
        guard p > 0, k > 0 else { throw SamplerError(message: "PK sampler: P (\(p)) and K (\(k)) must be positive") }
        guard worldSize > 0, rank >= 0, rank < worldSize else {
            throw SamplerError(message: "PK sampler: rank \(rank) is not in a world of \(worldSize)")
        }
        guard p % worldSize == 0 else {
            throw SamplerError(message: "PK sampler: P = \(p) identities per batch is not divisible by the world size \(worldSize)")
        }
        guard let maxLabel = labels.max(), labels.min()! >= 0 else {
            throw SamplerError(message: "PK sampler: no training images")
        }
        var lists = [[Int]](repeating: [], count: maxLabel + 1)
        for (i, l) in labels.enumerated() { lists[l].append(i) }
        if let missing = lists.firstIndex(where: \.isEmpty) {
            throw SamplerError(message: "PK sampler: label \(missing) has no image (labels must be 0..<classes)")
        }
        guard lists.count >= p else {
            throw SamplerError(message: "PK sampler: \(lists.count) training identities, fewer than P = \(p)")
        }
        identitiesPerBatch = p; imagesPerIdentity = k
        self.seed = seed; self.rank = rank; self.worldSize = worldSize
        imagesOfLabel = lists
    }

    public init(split: ReIDSplit, p: Int, k: Int, seed: UInt64, rank: Int = 0, worldSize: Int = 1) throws {
        try self.init(labels: split.images.map(\.pid), p: p, k: k, seed: seed, rank: rank, worldSize: worldSize)
    }

    /// The identity order of an epoch.
    public func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<identityCount)
        var rng = SplitMix64(seed: SplitMix64.key(RandomDomain.epochPermutation ^ seed, epoch))
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.below(i + 1)) }
        return order
    }

    /// Slots [first, first + count) of the global batch (identity-major).
    func slots(epoch: Int, index: Int, identities: Range<Int>) -> [PKSlot] {
        precondition(epoch >= 0 && index >= 0 && index < batchesPerEpoch,
                     "PK sampler: batch \(index) of epoch \(epoch) does not exist (\(batchesPerEpoch) batches per epoch)")
        let order = permutation(epoch: epoch)
        let K = imagesPerIdentity
        var out: [PKSlot] = []
        out.reserveCapacity(identities.count * K)
        for j in identities {
            let label = order[index * identitiesPerBatch + j]
            let pool = imagesOfLabel[label]
            var rng = SplitMix64(seed: SplitMix64.key(RandomDomain.identityImages ^ seed, epoch, index, j))
            var chosen: [Int]
            if pool.count >= K {
                var p = pool // partial Fisher-Yates: the first K of a random permutation
                for i in 0..<K { p.swapAt(i, i + rng.below(p.count - i)) }
                chosen = Array(p[0..<K])
            } else {
                chosen = (0..<K).map { _ in pool[rng.below(pool.count)] }
            }
            for (k, image) in chosen.enumerated() {
                let slot = j * K + k
                out.append(PKSlot(imageIndex: image, label: label,
                                  augmentationKey: SplitMix64.key(RandomDomain.augmentation ^ seed, epoch, index, slot)))
            }
        }
        return out
    }

    /// The whole global batch (every rank's share, in rank order).
    public func globalBatch(epoch: Int, index: Int) -> PKBatch {
        PKBatch(epoch: epoch, index: index, slots: slots(epoch: epoch, index: index, identities: 0..<identitiesPerBatch))
    }

    /// This rank's share of batch `index` of `epoch`.
    public func batch(epoch: Int, index: Int) -> PKBatch {
        let lo = rank * identitiesPerBatch / worldSize, hi = (rank + 1) * identitiesPerBatch / worldSize
        return PKBatch(epoch: epoch, index: index, slots: slots(epoch: epoch, index: index, identities: lo..<hi))
    }

    /// The position after (epoch, index).
    public func position(after epoch: Int, _ index: Int) -> (epoch: Int, index: Int) {
        index + 1 < batchesPerEpoch ? (epoch, index + 1) : (epoch + 1, 0)
    }
}

/// Domain tags so streams for different purposes never coincide.
enum RandomDomain {
    static let epochPermutation: UInt64 = 0x5045_524D   // "PERM"
    static let identityImages: UInt64 = 0x4944_494D      // "IDIM"
    static let augmentation: UInt64 = 0x4155_474D        // "AUGM"
}
