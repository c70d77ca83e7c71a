import Foundation
import MancsModel
import ReIDData
@testable import FeatureExtraction
import ReIDEval
import Testing
import TestSupport

/// The flip test of `mancs extract --flip`: each feature is the mean of the
/// image's and its mirror image's, checked against the test's own mirroring
/// and two plain forward passes.
@Suite("Flip-averaged features", .serialized)
final class FlipTests {
    let folder: TinyDatasetFolder

    init() throws { folder = try TinyDatasetFolder("mancs-flip") }

    @Test("mirroredImages reverses each row's pixels and keeps channels")
    func mirror() {
        // 2 images of 2 x 3 pixels: value = image*100 + y*10 + x, channel c adds c/10.
        var px: [Float] = []
        for n in 0..<2 { for y in 0..<2 { for x in 0..<3 { for c in 0..<3 { px.append(Float(n * 100 + y * 10 + x) + Float(c) / 10) } } } }
        let m = mirroredImages(px, count: 2, height: 2, width: 3)
        for n in 0..<2 { for y in 0..<2 { for x in 0..<3 { for c in 0..<3 {
            #expect(m[((n * 2 + y) * 3 + x) * 3 + c] == Float(n * 100 + y * 10 + (2 - x)) + Float(c) / 10)
        } } } }
        #expect(mirroredImages(m, count: 2, height: 2, width: 3) == px)
    }

    @Test("flip features are the mean of two plain passes, on the original and the mirrored pixels")
    func flipAverage() throws {
        let net = try TinyReID.network(seed: 5, maxBatch: 4)
        let images = Array(folder.dataset.query.images.prefix(4))
        let flipped = try FeatureExtractor(network: net, batchSize: 4, flip: true).extract(images: images)
        let plainExtractor = FeatureExtractor(network: net, batchSize: 4)
        let plain = try plainExtractor.extract(images: images)
        // Independent mirroring: pixel (y, x) <- (y, W - 1 - x), written from the layout.
        let pixels = try plainExtractor.loader.load(images[...])
        let h = TinyReID.config.height, w = TinyReID.config.width
        var mirrored = [Float](repeating: 0, count: pixels.count)
        for n in 0..<4 { for y in 0..<h { for x in 0..<w { for c in 0..<3 {
            mirrored[((n * h + y) * w + x) * 3 + c] = pixels[((n * h + y) * w + (w - 1 - x)) * 3 + c]
        } } } }
        let e = plainExtractor.dim
        var mirrorFeatures = [Float](repeating: 0, count: 4 * e)
        mirrorFeatures.withUnsafeMutableBufferPointer { plainExtractor.forward(mirrored, count: 4, into: $0.baseAddress!) }
        let expected = zip(plain, mirrorFeatures).map { ($0 + $1) * 0.5 }
        let worst = zip(flipped, expected).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5, "flip features differ from the mean of the two passes by \(worst)")
        // The pictures are not symmetric, so the mirror pass changes the features.
        #expect(zip(plain, mirrorFeatures).map { abs($0 - $1) }.max()! > 1e-3)
    }

    @Test("ExtractionOptions.flip reaches the features file")
    func flipThroughOptions() throws {
        let net = try TinyReID.network(seed: 6)
        let ckpt = folder.root.appendingPathComponent("ckpt.h5").path
        try TinyReID.writeCheckpoint(net, to: ckpt)
        let data = folder.dataPath
        let plain = try #require(try extractFeatures(checkpoint: ckpt, data: data, dataset: "market1501",
                                                     options: ExtractionOptions(batchSize: 4)))
        let flip = try #require(try extractFeatures(checkpoint: ckpt, data: data, dataset: "market1501",
                                                    options: ExtractionOptions(batchSize: 4, flip: true)))
        let direct = try FeatureExtractor(network: net, batchSize: 4, flip: true).extract(images: folder.dataset.gallery.images)
        #expect(zip(direct, flip.gallery.features).map { abs($0 - $1) }.max()! <= 1e-5)  // other chunk positions: rounding
        #expect(zip(plain.gallery.features, flip.gallery.features).map { abs($0 - $1) }.max()! > 1e-3)
    }
}
