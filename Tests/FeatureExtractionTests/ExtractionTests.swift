import Distributed
import Foundation
import MancsModel
import ReIDData
@testable import FeatureExtraction
import ReIDEval
import Testing
import TestSupport

@Suite("Feature extraction", .serialized)
final class ExtractionTests {
    let folder: TinyDatasetFolder
    var root: URL { folder.root }
    var dataset: ReIDDataset { folder.dataset }
    var dataPath: String { folder.dataPath }

    init() throws { folder = try TinyDatasetFolder("mancs-extract") }

    func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).map { abs($0 - $1) }.max() ?? 0
    }

    @Test("features file: shapes, pids, camids, paths and multi-query from a full checkpoint")
    func featuresFileFromCheckpoint() throws {
        let net = try TinyReID.network(seed: 3)
        let ckpt = root.appendingPathComponent("ckpt.h5").path
        try TinyReID.writeCheckpoint(net, to: ckpt)
        let file = try #require(try extractFeatures(checkpoint: ckpt, data: dataPath, dataset: "market1501",
                                                    options: ExtractionOptions(batchSize: 4)))
        let out = root.appendingPathComponent("feats.h5").path
        try file.write(to: out)
        let back = try FeaturesFile.read(out)
        #expect(back.dim == 256)
        #expect(back.query.count == 6 && back.gallery.count == 10)
        #expect(back.query.features.count == 6 * 256 && back.gallery.features.count == 10 * 256)
        #expect(back.query.pids == dataset.query.images.map { Int64($0.pid) })
        #expect(back.query.camids == dataset.query.images.map { Int64($0.camera) })
        #expect(back.gallery.pids == dataset.gallery.images.map { Int64($0.pid) })
        #expect(back.gallery.pids.contains(0))
        #expect(back.gallery.camids == dataset.gallery.images.map { Int64($0.camera) })
        #expect(back.query.paths == dataset.query.images.map(\.path))
        #expect(back.gallery.paths == dataset.gallery.images.map(\.path))
        let mq = try #require(back.multiQuery)
        #expect(mq.count == 6 && mq.pids == dataset.multiQuery!.images.map { Int64($0.pid) })
        try back.query.checkFinite(name: "query")
        // The features are those of the checkpoint's network (64x32 input from its config).
        let direct = try FeatureExtractor(network: net, batchSize: 4).extract(images: dataset.query.images)
        #expect(maxDifference(direct, back.query.features) == 0)
        // Different images give different features.
        #expect(maxDifference(Array(direct[0..<256]), Array(direct[256..<512])) > 1e-4)
        // The features rank something: the evaluation runs on them.
        let result = try evaluateMarket(query: back.query, gallery: back.gallery)
        #expect(result.numValidQuery == 6)
    }

    @Test("a stop signal ends an extraction at the next batch, naming the signal")
    func stopSignalEndsExtraction() throws {
        let net = try TinyReID.network(seed: 5, maxBatch: 2)
        StopSignal.request()
        defer { StopSignal.request(false) }
        let error = #expect(throws: ExtractionStopped.self) {
            try FeatureExtractor(network: net, batchSize: 2).extract(images: dataset.gallery.images)
        }
        #expect(error != nil)
        #expect(throws: (any Error).self) { try extractFeatures(network: net, dataset: dataset) }
    }

    @Test("the same features whatever the batch size (chunking); exactly the same for the same batch size")
    func chunkingDoesNotChangeFeatures() throws {
        let net = try TinyReID.network(seed: 5, maxBatch: 7)
        let images = dataset.gallery.images + dataset.query.images
        let one = try FeatureExtractor(network: net, batchSize: 1).extract(images: images)
        let three = try FeatureExtractor(network: net, batchSize: 3).extract(images: images)
        let all = try FeatureExtractor(network: net).extract(images: images)  // maxBatch 7
        #expect(one.count == images.count * 256)
        let scale = one.map(abs).max()!
        #expect(scale > 0.01)
        // Other GEMM shapes sum in another order: equal to float rounding.
        #expect(maxDifference(one, three) <= 1e-5 * scale)
        #expect(maxDifference(one, all) <= 1e-5 * scale)
        // A network with another maximum batch, same weights, same chunk: the same bits.
        let big = try TinyReID.network(seed: 5, maxBatch: 16)
        #expect(maxDifference(three, try FeatureExtractor(network: big, batchSize: 3).extract(images: images)) == 0)
        // Ranks take whole chunks: blocks extracted apart and joined give the same bits.
        let list = EvaluationList(dataset)
        for ranks in [2, 3, 5] {
            var joined: [Float] = []
            for r in 0..<ranks {
                let block = list.block(rank: r, size: ranks, chunk: 3)
                #expect(block.isEmpty || block.lowerBound % 3 == 0)
                joined += try FeatureExtractor(network: net, batchSize: 3).extract(images: list.images[block])
            }
            let whole = try FeatureExtractor(network: net, batchSize: 3).extract(images: list.images)
            #expect(joined == whole, "\(ranks) ranks")
        }
        // The in-process dataset API (the trainer's) agrees, in dataset order.
        let file = try #require(try extractFeatures(network: net, dataset: dataset, batchSize: 3))
        let queryAlone = try FeatureExtractor(network: net, batchSize: 3).extract(images: dataset.query.images)
        #expect(file.query.features == queryAlone)
        #expect(maxDifference(Array(one[(10 * 256)...]), file.query.features) <= 1e-5 * scale)
    }

    @Test("a weights-only (h5py-style) file: architecture from shapes, input size from the flags")
    func weightsOnlyFile() throws {
        let net = try TinyReID.network(seed: 11)
        let path = root.appendingPathComponent("weights.h5").path
        try TinyReID.writeWeightsOnly(net, to: path)
        let loaded = try loadInferenceNetwork(checkpoint: path, maxBatch: 4, height: 64, width: 32)
        #expect(loaded.config.baseWidth == 8 && loaded.config.blocks == [1, 1, 1, 1] && loaded.config.numClasses == 4)
        #expect(loaded.config.height == 64 && loaded.config.width == 32)
        let expected = try FeatureExtractor(network: net, batchSize: 4).extract(images: dataset.query.images)
        let got = try FeatureExtractor(network: loaded).extract(images: dataset.query.images)
        #expect(maxDifference(expected, got) == 0)
        // Without flags the input size is the default 256x128.
        let defaultSize = try loadInferenceNetwork(checkpoint: path, maxBatch: 1)
        #expect(defaultSize.config.height == 256 && defaultSize.config.width == 128)
        // The whole path through the dataset works too.
        let file = try #require(try extractFeatures(checkpoint: path, data: dataPath, dataset: "market1501",
                                                    options: ExtractionOptions(batchSize: 4, height: 64, width: 32)))
        #expect(maxDifference(expected, file.query.features) == 0)
    }

    @Test("a file whose shapes do not fit, or no file: a one-line error naming it")
    func badCheckpoints() throws {
        let net = try TinyReID.network(seed: 1)
        let path = root.appendingPathComponent("bad.h5").path
        try TinyReID.writeWeightsOnly(net, to: path, tamper: "heads.rank.fc.weight")
        do {
            _ = try loadInferenceNetwork(checkpoint: path, maxBatch: 2, height: 64, width: 32)
            Issue.record("a tampered file loaded")
        } catch {
            let text = "\(error)"
            #expect(text.contains(path) && text.contains("heads.rank.fc.weight"))
            #expect(!text.contains("\n"))
        }
        let missing = root.appendingPathComponent("nope.h5").path
        #expect(throws: ExtractionError.self) { _ = try loadInferenceNetwork(checkpoint: missing, maxBatch: 1) }
        // A dataset folder that is not there.
        do {
            _ = try extractFeatures(checkpoint: path, data: root.appendingPathComponent("nodata").path, dataset: "market1501")
            Issue.record("extraction without data succeeded")
        } catch {
            #expect("\(error)".contains("nodata"))
        }
    }
}
