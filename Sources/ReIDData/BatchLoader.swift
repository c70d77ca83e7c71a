import Foundation

// MARK: Batches

/// A rank's local training batch, ready for the network.
public struct LoadedBatch: Sendable {
    public var epoch: Int
    public var index: Int
    /// NHWC float32, normalised: count x height x width x 3.
    public var images: [Float]
    public var labels: [Int]
    /// The sampled slots (image index, label, augmentation key), after any
    /// replacement of an undecodable image.
    public var slots: [PKSlot]
    public var count: Int { labels.count }
}

/// Decodes and augments the images of a sampled batch. One per thread.
public final class BatchAssembler: @unchecked Sendable { // used by one thread at a time
    public let split: ReIDSplit
    public let sampler: PKSampler
    public let transform: ImageTransform
    private let decoder = JPEGDecoder()
    private let badImages: BadImageRegistry
    private let warn: @Sendable (String) -> Void

    public init(split: ReIDSplit, sampler: PKSampler, settings: TransformSettings = TransformSettings(),
                warn: @escaping @Sendable (String) -> Void = printWarning) {
        self.split = split
        self.sampler = sampler
        transform = ImageTransform(settings: settings)
        badImages = BadImageRegistry()
        self.warn = warn
    }

    init(split: ReIDSplit, sampler: PKSampler, settings: TransformSettings, badImages: BadImageRegistry,
         warn: @escaping @Sendable (String) -> Void) {
        self.split = split; self.sampler = sampler
        transform = ImageTransform(settings: settings)
        self.badImages = badImages; self.warn = warn
    }

    /// Decodes + augments every slot. An undecodable image is replaced by the
    /// next decodable image of the same identity (in index order, wrapping),
    /// with a warning; only an identity with no decodable image is an error.
    public func assemble(_ batch: PKBatch) throws -> LoadedBatch {
        let size = transform.settings.imageSize
        var images = [Float](repeating: 0, count: batch.slots.count * size)
        var slots = batch.slots
        try images.withUnsafeMutableBufferPointer { out in
            for (s, slot) in batch.slots.enumerated() {
                let (index, image) = try decodeOrReplace(slot)
                slots[s].imageIndex = index
                transform.training(image, key: slot.augmentationKey, into: out.baseAddress! + s * size)
            }
        }
        return LoadedBatch(epoch: batch.epoch, index: batch.index, images: images, labels: slots.map(\.label), slots: slots)
    }

    private func decodeOrReplace(_ slot: PKSlot) throws -> (Int, RGB8Image) {
        let pool = sampler.imagesOfLabel[slot.label]
        let start = pool.firstIndex(of: slot.imageIndex) ?? 0
        var firstFailure: String? = nil
        for step in 0..<pool.count {
            let candidate = pool[(start + step) % pool.count]
            if badImages.contains(candidate) { firstFailure = firstFailure ?? split.images[candidate].path; continue }
            do {
                let image = try decodeImage(split.images[candidate], decoder: decoder)
                if let bad = firstFailure, step > 0 {
                    warn("warning: \(bad) cannot be decoded; using \(split.images[candidate].path) (same identity) instead")
                }
                return (candidate, image)
            } catch {
                if badImages.insert(candidate) { warn("warning: skipping \(error)") }
                firstFailure = firstFailure ?? split.images[candidate].path
            }
        }
        throw ImageDecodeError(path: split.images[slot.imageIndex].path,
                               reason: "no image of training label \(slot.label) can be decoded (\(pool.count) tried)")
    }
}

/// Prints a warning line to standard error.
public let printWarning: @Sendable (String) -> Void = { message in
    FileHandle.standardError.write((message + "\n").data(using: .utf8)!)
}

/// Images known to be undecodable, shared by the loader's threads.
final class BadImageRegistry: @unchecked Sendable {
    private var set = Set<Int>()
    private let lock = NSLock()
    func contains(_ i: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return set.contains(i) }
    /// True when newly inserted.
    func insert(_ i: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return set.insert(i).inserted }
}

// MARK: Prefetching loader

/// Produces a rank's local batches in order, starting at (epoch, batch) and
/// running on through later epochs, decoded and augmented by `threads`
/// background threads at most `prefetch` batches ahead. The threads stop on
/// `stop()` or when the loader is released.
public final class BatchLoader: @unchecked Sendable {
    public let sampler: PKSampler
    private let queue: BatchQueue

    public init(split: ReIDSplit, sampler: PKSampler, settings: TransformSettings = TransformSettings(),
                startEpoch: Int = 0, startBatch: Int = 0, threads: Int = 2, prefetch: Int = 4,
                warn: @escaping @Sendable (String) -> Void = printWarning) {
        precondition(startBatch >= 0 && startBatch < sampler.batchesPerEpoch && startEpoch >= 0,
                     "BatchLoader: start (\(startEpoch), \(startBatch)) outside 0..<\(sampler.batchesPerEpoch) batches")
        self.sampler = sampler
        queue = BatchQueue(sampler: sampler, start: (startEpoch, startBatch), prefetch: max(prefetch, 1), threads: max(threads, 1))
        let registry = BadImageRegistry()
        for t in 0..<max(threads, 1) {
            let assembler = BatchAssembler(split: split, sampler: sampler, settings: settings, badImages: registry, warn: warn)
            let queue = self.queue
            let thread = Thread { queue.work(assembler) }
            thread.name = "mancs-loader-\(t)"
            thread.start()
        }
    }

    deinit { queue.stop() }

    /// The next local batch (blocks until it is ready). Throws if an identity
    /// has no decodable image at all.
    public func next() throws -> LoadedBatch { try queue.next() }

    /// Stops the background threads (each finishes the batch it is on).
    public func stop() { queue.stop() }
}

/// The loader's shared state: which batches are taken, which are ready.
final class BatchQueue: @unchecked Sendable {
    private let sampler: PKSampler
    private let start: (epoch: Int, index: Int)
    private let prefetch: Int
    private let condition = NSCondition()
    private var produced = 0     // next sequence number a worker takes
    private var consumed = 0     // next sequence number `next()` returns
    private var ready: [Int: Result<LoadedBatch, Error>] = [:]
    private var stopped = false
    private var running: Int

    init(sampler: PKSampler, start: (Int, Int), prefetch: Int, threads: Int) {
        self.sampler = sampler; self.start = start; self.prefetch = prefetch; running = threads
    }

    /// (epoch, batch) of sequence number s.
    private func position(_ s: Int) -> (epoch: Int, index: Int) {
        let n = sampler.batchesPerEpoch
        let flat = start.index + s
        return (start.epoch + flat / n, flat % n)
    }

    func work(_ assembler: BatchAssembler) {
        while true {
            condition.lock()
            while !stopped && produced >= consumed + prefetch { condition.wait() }
            if stopped { running -= 1; condition.broadcast(); condition.unlock(); return }
            let s = produced
            produced += 1
            condition.unlock()
            let p = position(s)
            let result = Result { try assembler.assemble(sampler.batch(epoch: p.epoch, index: p.index)) }
            condition.lock()
            ready[s] = result
            condition.broadcast()
            condition.unlock()
        }
    }

    func next() throws -> LoadedBatch {
        condition.lock()
        precondition(!stopped, "BatchLoader.next() after stop()")
        while ready[consumed] == nil { condition.wait() }
        let result = ready.removeValue(forKey: consumed)!
        consumed += 1
        condition.broadcast()
        condition.unlock()
        return try result.get()
    }

    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }
}

// MARK: Evaluation images

/// Loads query/gallery images with the evaluation transform (resize +
/// normalise), several at a time on `threads` threads.
public final class EvaluationImageLoader: @unchecked Sendable {
    public let settings: TransformSettings
    public let threads: Int

    public init(settings: TransformSettings = TransformSettings(), threads: Int = 2) {
        self.settings = settings
        self.threads = max(threads, 1)
    }

    /// NHWC float32 for `images`, in order. Throws the first image that cannot be decoded.
    public func load(_ images: ArraySlice<ReIDImage>) throws -> [Float] {
        let size = settings.imageSize
        var out = [Float](repeating: 0, count: images.count * size)
        let list = Array(images)
        let chunks = min(threads, max(list.count, 1))
        let errors = ErrorSlot()
        let settings = self.settings
        out.withUnsafeMutableBufferPointer { buffer in
            let base = SendablePointer(buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let decoder = JPEGDecoder()
                let transform = ImageTransform(settings: settings)
                for i in stride(from: c, to: list.count, by: chunks) {
                    do {
                        let image = try decodeImage(list[i], decoder: decoder)
                        transform.evaluation(image, into: base.pointer + i * size)
                    } catch { errors.record(i, error) }
                }
            }
        }
        if let e = errors.first { throw e }
        return out
    }
}

struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { pointer = p }
}

/// The error of the lowest-numbered failing image.
final class ErrorSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var best: (Int, Error)?
    func record(_ i: Int, _ e: Error) { lock.lock(); if best == nil || i < best!.0 { best = (i, e) }; lock.unlock() }
    var first: Error? { lock.lock(); defer { lock.unlock() }; return best?.1 }
}
