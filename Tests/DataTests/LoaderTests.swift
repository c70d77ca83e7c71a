import Foundation
import Testing
import TestSupport
@testable import ReIDData

final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ s: String) { lock.lock(); lines.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

@Suite struct LoaderTests {
    /// 6 identities x 3 images of 64x128 (the Market size), one image truncated.
    func makeSplit(corrupt: Bool) -> ReIDSplit {
        let dir = SharedFiles.temporaryDirectory("loader").path
        var images: [ReIDImage] = []
        for pid in 0..<6 {
            for n in 0..<3 {
                let path = "\(dir)/\(pid)_\(n).jpg"
                if corrupt && pid == 2 && n == 1 { TestJPEG.writeTruncated(path, seed: pid * 3 + n) } else {
                    TestJPEG.write(path, seed: pid * 3 + n, gray: n == 2)
                }
                images.append(ReIDImage(source: .jpeg(path: path), pid: pid, camera: n))
            }
        }
        return ReIDSplit(images: images)
    }

    @Test func loaderMatchesDirectDecodingAndAugmenting() throws {
        let split = makeSplit(corrupt: false)
        let sampler = try PKSampler(split: split, p: 2, k: 2, seed: 5, rank: 1, worldSize: 2)
        let loader = BatchLoader(split: split, sampler: sampler, startEpoch: 2, startBatch: 1, threads: 3, prefetch: 2)
        defer { loader.stop() }
        let decoder = JPEGDecoder(), transform = ImageTransform()
        var pos = (epoch: 2, index: 1)
        for _ in 0..<5 {
            let got = try loader.next()
            #expect(got.epoch == pos.epoch && got.index == pos.index)
            let b = sampler.batch(epoch: pos.epoch, index: pos.index)
            #expect(got.labels == b.slots.map(\.label) && got.count == 2)
            var expected: [Float] = []
            for slot in b.slots {
                expected += transform.training(try decoder.decode(file: split.images[slot.imageIndex].path), key: slot.augmentationKey)
            }
            #expect(got.images == expected)
            pos = sampler.position(after: pos.epoch, pos.index)
        }
    }

    @Test func batchesDoNotDependOnTheNumberOfRanks() throws {
        let split = makeSplit(corrupt: false)
        for n in [2, 4] {
            let whole = BatchLoader(split: split, sampler: try PKSampler(split: split, p: 4, k: 2, seed: 8), startEpoch: 1, threads: 1)
            let parts = try (0..<n).map { r in
                BatchLoader(split: split, sampler: try PKSampler(split: split, p: 4, k: 2, seed: 8, rank: r, worldSize: n), startEpoch: 1)
            }
            for _ in 0..<2 {
                let w = try whole.next()
                let shards = try parts.map { try $0.next() }
                #expect(shards.flatMap(\.images) == w.images, "n = \(n)")
                #expect(shards.flatMap(\.labels) == w.labels)
                #expect(shards.allSatisfy { $0.epoch == w.epoch && $0.index == w.index })
            }
            // Released without stop(): deinit ends the threads.
        }
    }

    @Test func corruptImageIsReplacedBySameIdentityWithAWarning() throws {
        let split = makeSplit(corrupt: true)
        let sampler = try PKSampler(split: split, p: 6, k: 3, seed: 1) // every image of every identity
        let log = WarningLog()
        let loader = BatchLoader(split: split, sampler: sampler, threads: 2, warn: { log.add($0) })
        let batch = try loader.next()
        loader.stop()
        let bad = 2 * 3 + 1
        #expect(!batch.slots.contains { $0.imageIndex == bad })
        #expect(batch.slots.filter { $0.label == 2 }.allSatisfy { [6, 8].contains($0.imageIndex) })
        #expect(log.all.contains { $0.contains("2_1.jpg") })
        // Deterministic: a fresh assembler gives the same batch.
        let again = try BatchAssembler(split: split, sampler: sampler, warn: { _ in }).assemble(sampler.batch(epoch: 0, index: 0))
        #expect(again.images == batch.images && again.slots == batch.slots)
    }

    @Test func evaluationLoaderMatchesTransform() throws {
        let split = makeSplit(corrupt: false)
        let out = try EvaluationImageLoader(threads: 3).load(split.images[2..<9])
        let t = ImageTransform(), d = JPEGDecoder()
        var expected: [Float] = []
        for image in split.images[2..<9] { expected += t.evaluation(try d.decode(file: image.path)) }
        #expect(out == expected)
        let broken = makeSplit(corrupt: true)
        #expect(throws: ImageDecodeError.self) { try EvaluationImageLoader().load(broken.images[...]) }
    }
}
