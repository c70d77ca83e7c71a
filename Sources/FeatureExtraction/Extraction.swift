import Checkpoint
import Distributed
import Foundation
import HDF5Kit
import MancsModel
import ReIDData
import ReIDEval

// Feature extraction (docs/method.md §1, §5, §7): f_rank of every query, gallery
// and multi-query image, with the evaluation transform and the network in
// inference mode. Used by `mancs extract`, `mancs eval --checkpoint`,
// `mancs visualize` and, in-process with its own network, by the trainer.

// MARK: - Errors

/// Extraction could not run: a one-line message naming what and where.
public struct ExtractionError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Extracting a list of images

/// Runs a network in inference mode over images, in chunks of `chunkSize`
/// (<= the network's `maxBatch`). Inference BatchNorm uses the running
/// statistics, so an image's feature depends on that image only — up to float
/// rounding: GEMMs of other shapes may sum in another order (about 1e-6 of the
/// feature scale). So every pass has the same shape: a short last chunk is
/// padded with copies of its last image, and a given image at a given position
/// of a chunk gives the same bits whichever list it came from. `extractFeatures`
/// splits the work across ranks at chunk boundaries, so one process and N ranks
/// agree exactly for the same batch size.
public final class FeatureExtractor: @unchecked Sendable {  // one thread drives it at a time
    public let network: MancsNetwork
    /// Images per forward pass.
    public let chunkSize: Int
    public let loader: EvaluationImageLoader
    /// Flip test: each feature is the mean of the image's and its mirror image's.
    public let flip: Bool

    /// Width E of f_rank.
    public var dim: Int { network.config.resolvedEmbeddingDim }

    /// `batchSize` nil (or larger than `network.maxBatch`) means `network.maxBatch`;
    /// images are decoded on `loaderThreads` threads at the network's input size.
    public init(network: MancsNetwork, batchSize: Int? = nil, loaderThreads: Int = 2, flip: Bool = false) {
        precondition((batchSize ?? 1) >= 1, "FeatureExtractor: batch size must be at least 1, got \(batchSize!)")
        self.network = network
        self.flip = flip
        chunkSize = min(batchSize ?? network.maxBatch, network.maxBatch)
        loader = EvaluationImageLoader(settings: TransformSettings(height: network.config.height, width: network.config.width),
                                       threads: loaderThreads)
    }

    /// f_rank of each image, row-major [images.count, dim]. `progress` gets the
    /// number of images done after each chunk. Throws the first undecodable image.
    public func extract(images: ArraySlice<ReIDImage>, progress: ((Int) -> Void)? = nil) throws -> [Float] {
        let e = dim
        var out = [Float](repeating: 0, count: images.count * e)
        var start = images.startIndex
        var padded = [Float](repeating: 0, count: chunkSize * e)
        while start < images.endIndex {
            // SIGTERM/SIGUSR1 during an evaluation: stop at the next batch, not after all of them.
            if StopSignal.stopRequested { throw ExtractionStopped() }
            let end = min(start + chunkSize, images.endIndex)
            var pixels = try loader.load(images[start..<end])
            let row = start - images.startIndex, n = end - start
            if n < chunkSize {  // same pass shape as the full chunks (see above)
                let last = Array(pixels[((n - 1) * loader.settings.imageSize)...])
                for _ in n..<chunkSize { pixels += last }
                padded.withUnsafeMutableBufferPointer { forward(pixels, count: chunkSize, into: $0.baseAddress!) }
                out.withUnsafeMutableBufferPointer { o in
                    (o.baseAddress! + row * e).update(from: padded, count: n * e)
                }
            } else {
                out.withUnsafeMutableBufferPointer { o in forward(pixels, count: n, into: o.baseAddress! + row * e) }
            }
            progress?(end - images.startIndex)
            start = end
        }
        return out
    }

    public func extract(images: [ReIDImage]) throws -> [Float] { try extract(images: images[...]) }

    /// f_rank of `count` already transformed images (NHWC, normalised), at most
    /// `chunkSize` of them, into `output` [count, dim]. The network's other outputs
    /// (e.g. `attentionMasks`) are those of these images afterwards (with `flip`,
    /// the mirrored pass runs first).
    public func forward(_ pixels: [Float], count: Int, into output: UnsafeMutablePointer<Float>) {
        precondition(count >= 1 && count <= chunkSize, "FeatureExtractor: \(count) images in one pass (1...\(chunkSize))")
        precondition(pixels.count == count * loader.settings.imageSize,
                     "FeatureExtractor: \(pixels.count) floats for \(count) images of \(loader.settings.imageSize)")
        var mirrored: [Float] = []
        if flip {
            let m = mirroredImages(pixels, count: count, height: loader.settings.height, width: loader.settings.width)
            let out = m.withUnsafeBufferPointer { network.forward(images: $0.baseAddress!, batch: count, training: false) }
            mirrored = Array(UnsafeBufferPointer(start: out.fRank, count: count * dim))
        }
        let out = pixels.withUnsafeBufferPointer { network.forward(images: $0.baseAddress!, batch: count, training: false) }
        output.update(from: out.fRank, count: count * dim)
        for i in mirrored.indices { output[i] = (output[i] + mirrored[i]) * 0.5 }
    }
}

/// NHWC images (3 channels) mirrored left to right.
public func mirroredImages(_ pixels: [Float], count: Int, height: Int, width: Int) -> [Float] {
    precondition(pixels.count == count * height * width * 3, "mirroredImages: \(pixels.count) floats for \(count) images")
    var out = pixels
    for row in 0..<(count * height) {
        let base = row * width * 3
        for x in 0..<width {
            let from = base + (width - 1 - x) * 3, to = base + x * 3
            out[to] = pixels[from]; out[to + 1] = pixels[from + 1]; out[to + 2] = pixels[from + 2]
        }
    }
    return out
}

// MARK: - A dataset's evaluation features, over the ranks of a job

/// The evaluation images of a dataset, one list: query, then gallery, then multi-query.
struct EvaluationList {
    let images: [ReIDImage]
    let queryCount: Int, galleryCount: Int, multiQueryCount: Int?

    init(_ dataset: ReIDDataset) {
        queryCount = dataset.query.count
        galleryCount = dataset.gallery.count
        multiQueryCount = dataset.multiQuery?.count
        images = dataset.query.images + dataset.gallery.images + (dataset.multiQuery?.images ?? [])
    }

    /// Rank r's contiguous block of the list: whole chunks of `chunk` images
    /// (the last one may be short), shared out as evenly as possible.
    func block(rank: Int, size: Int, chunk: Int) -> Range<Int> {
        let n = images.count, chunks = (n + chunk - 1) / chunk
        return min(chunks * rank / size * chunk, n)..<min(chunks * (rank + 1) / size * chunk, n)
    }

    /// Splits the features of the whole list into a features file.
    func featuresFile(_ features: [Float], dim: Int, paths: Bool) throws -> FeaturesFile {
        func set(_ range: Range<Int>, _ name: String) throws -> FeatureSet {
            let list = images[range]
            return try FeatureSet(features: Array(features[(range.lowerBound * dim)..<(range.upperBound * dim)]), dim: dim,
                                  pids: list.map { Int64($0.pid) }, camids: list.map { Int64($0.camera) },
                                  paths: paths ? list.map(\.path) : nil, name: name)
        }
        let q = try set(0..<queryCount, "query")
        let g = try set(queryCount..<(queryCount + galleryCount), "gallery")
        let mq = try multiQueryCount.map { try set((queryCount + galleryCount)..<(queryCount + galleryCount + $0), "multiquery") }
        return try FeaturesFile(query: q, gallery: g, multiQuery: mq)
    }
}

/// f_rank of `dataset`'s query, gallery and (Market-1501 gt_bbox) multi-query
/// images with `network` in inference mode, pids and camids from the dataset
/// (original pids, 0-based cameras), in the dataset's order.
///
/// With a communicator of several ranks this is collective: every rank calls it
/// with the same dataset and an identical network; rank r extracts the r-th
/// contiguous block of the images (in chunks of at most `network.maxBatch`) and
/// rank 0 gathers them. It returns the features on rank 0 and nil on the other
/// ranks. Before extracting, rank 0's BatchNorm running statistics are broadcast
/// into every rank's `network.buffers` (in data-parallel training each rank's
/// own running statistics drift apart; rank 0's are the ones checkpoints keep),
/// unless `syncBuffers` is false. An error on any rank (e.g. an undecodable
/// image) is thrown on every rank.
public func extractFeatures(network: MancsNetwork, dataset: ReIDDataset, comm: Communicator? = nil,
                            batchSize: Int? = nil, loaderThreads: Int = 2, paths: Bool = true,
                            syncBuffers: Bool = true, flip: Bool = false,
                            progress: ((Int, Int) -> Void)? = nil) throws -> FeaturesFile? {
    let list = EvaluationList(dataset)
    let rank = comm?.rank ?? 0, size = comm?.size ?? 1
    if let comm, size > 1, syncBuffers { try comm.broadcast(network.buffers.values) }
    let extractor = FeatureExtractor(network: network, batchSize: batchSize, loaderThreads: loaderThreads, flip: flip)
    let block = list.block(rank: rank, size: size, chunk: extractor.chunkSize)
    let local = try agreeOnSuccess(comm) {
        try extractor.extract(images: list.images[block]) { done in progress?(done, block.count) }
    }
    let all = try gatherBlocks(local, comm: comm)
    guard let all else { return nil }
    return try list.featuresFile(all, dim: extractor.dim, paths: paths)
}

// MARK: - From a checkpoint file

/// An extraction ended early by a stop signal (SIGTERM, SIGUSR1).
public struct ExtractionStopped: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "feature extraction stopped by a signal" }
}

/// `mancs extract` / `mancs eval --checkpoint` settings.
public struct ExtractionOptions: Sendable {
    /// Images per forward pass (and the network's maximum batch).
    public var batchSize = 32
    /// Decoding threads.
    public var loaderThreads = 2
    /// Input size; nil: the checkpoint's `config`, else 256 x 128.
    public var height: Int? = nil
    public var width: Int? = nil
    /// Store image paths in the features file.
    public var paths = true
    /// Average each feature with its mirror image's (flip test).
    public var flip = false
    public init(batchSize: Int = 32, loaderThreads: Int = 2, height: Int? = nil, width: Int? = nil, paths: Bool = true,
                flip: Bool = false) {
        self.batchSize = batchSize; self.loaderThreads = loaderThreads
        self.height = height; self.width = width; self.paths = paths; self.flip = flip
    }
}

/// A network for inference built from a checkpoint or a weights-only file
/// (`/model` and `/buffers`, e.g. written by h5py): the architecture from the
/// file's `config` or, without one, from the tensor shapes; the input size from
/// `height`/`width` when given, else from the `config`, else 256 x 128.
/// A file that does not fit is a one-line error naming the file.
public func loadInferenceNetwork(checkpoint path: String, maxBatch: Int, height: Int? = nil,
                                 width: Int? = nil) throws -> MancsNetwork {
    guard FileManager.default.fileExists(atPath: path) else { throw ExtractionError("\(path): no such checkpoint file") }
    if !Checkpoint.isSafetensors(path) {
        try FileProbe.check(path, kind: "checkpoint")  // libhdf5 may crash on a crafted file: a child reads it first
    }
    let url = URL(fileURLWithPath: path)
    do {
        var config = try Checkpoint.inferConfig(url)
        if let h = height { config.height = h }
        if let w = width { config.width = w }
        let network: MancsNetwork
        do { network = try MancsNetwork(config: config, maxBatch: maxBatch) } catch {
            throw ExtractionError("\(path): cannot build the network it describes: \(error)")
        }
        try Checkpoint.loadWeights(url, parameters: network.parameters, buffers: network.buffers)
        return network
    } catch let e as ExtractionError {
        throw e
    } catch {
        throw ExtractionError(oneLine("\(error)", prefix: path))
    }
}

/// Loads `checkpoint` and `dataset` (by name, from `data`) and extracts the
/// evaluation features (see `extractFeatures(network:dataset:comm:...)`). With a
/// communicator of several ranks, collective: every rank loads the file and the
/// listing itself and extracts its block; rank 0 gets the features, the others
/// nil. Without a communicator (or a world of one) it always returns the file.
/// (The buffers are broadcast although every rank read the same file: the
/// trainer's code path, exercised by `mpirun -np 2 mancs extract`.)
public func extractFeatures(checkpoint: String, data: String, dataset name: String,
                            options: ExtractionOptions = ExtractionOptions(), comm: Communicator? = nil,
                            progress: ((Int, Int) -> Void)? = nil) throws -> FeaturesFile? {
    guard options.batchSize >= 1 else { throw ExtractionError("batch size must be at least 1, got \(options.batchSize)") }
    // Set-up errors may differ between ranks (a file one host cannot see): agree first.
    let (network, dataset) = try agreeOnSuccess(comm) { () -> (MancsNetwork, ReIDDataset) in
        let dataset = try loadDataset(name: name, root: data)
        let network = try loadInferenceNetwork(checkpoint: checkpoint, maxBatch: options.batchSize,
                                               height: options.height, width: options.width)
        return (network, dataset)
    }
    return try extractFeatures(network: network, dataset: dataset, comm: comm, batchSize: options.batchSize,
                               loaderThreads: options.loaderThreads, paths: options.paths, syncBuffers: true,
                               flip: options.flip, progress: progress)
}

// MARK: - Collective helpers

/// `Communicator.agreeing` when there is a communicator: if `body` failed on
/// any rank, every rank throws, so no rank is left waiting in a later collective.
func agreeOnSuccess<T>(_ comm: Communicator?, _ body: () throws -> T) throws -> T {
    guard let comm else { return try body() }
    return try comm.agreeing(body)
}

/// Rank 0 receives every rank's block of rows, concatenated in rank order (nil elsewhere).
func gatherBlocks(_ local: [Float], comm: Communicator?) throws -> [Float]? {
    guard let comm, comm.size > 1 else { return local }
    let bytes = local.withUnsafeBytes { Data($0) }
    guard let parts = try comm.gather(data: bytes) else { return nil }
    var all = [Float](repeating: 0, count: parts.reduce(0) { $0 + $1.count } / MemoryLayout<Float>.size)
    all.withUnsafeMutableBytes { dst in
        var offset = 0
        for part in parts where !part.isEmpty {  // copied bytewise: a gathered blob need not be Float-aligned
            part.withUnsafeBytes { dst.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            offset += part.count
        }
    }
    return all
}

/// A message on one line, starting with `prefix` unless it already names it.
func oneLine(_ text: String, prefix: String) -> String {
    let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
    return flat.contains(prefix) ? flat : "\(prefix): \(flat)"
}
