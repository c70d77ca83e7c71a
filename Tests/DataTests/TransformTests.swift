import Foundation
import Testing
import TestSupport
@testable import ReIDData

@Suite struct TransformTests {
    let image = RGB8Image(width: 64, height: 128, pixels: TestJPEG.pattern(width: 64, height: 128, seed: 5))

    @Test func evaluationOfAConstantImageIsNormalised() {
        let grey = RGB8Image(width: 10, height: 20, pixels: [UInt8](repeating: 128, count: 600))
        let s = TransformSettings()
        let out = ImageTransform(settings: s).evaluation(grey)
        #expect(out.count == 256 * 128 * 3)
        for c in 0..<3 {
            let expected = (128 / 255 - s.mean[c]) / s.std[c]
            #expect(abs(out[c] - expected) < 1e-5)
            #expect(abs(out[out.count - 3 + c] - expected) < 1e-5)
        }
    }

    @Test func trainingIsDeterministicPerKey() {
        let a = ImageTransform().training(image, key: 1234)
        let b = ImageTransform().training(image, key: 1234)
        let t = ImageTransform()
        _ = t.training(image, key: 99) // scratch buffers of a used transform do not leak into the next image
        let c = t.training(image, key: 1234)
        #expect(a == b)
        #expect(a == c)
        let d = ImageTransform().training(image, key: 1235)
        #expect(a != d)
    }

    @Test func drawsStayInBoundsAndVary() {
        let t = ImageTransform()
        var flips = 0, erasures = 0, fullCrops = 0
        var out = [Float](repeating: 0, count: t.settings.imageSize)
        for key in 0..<300 {
            let draw = out.withUnsafeMutableBufferPointer { t.training(image, key: UInt64(key), into: $0.baseAddress!) }
            let c = draw.crop
            #expect(c.top >= 0 && c.left >= 0 && c.top + c.height <= 256 && c.left + c.width <= 128)
            let area = Double(c.height * c.width) / Double(256 * 128)
            let aspect = Double(c.height) / Double(c.width)
            if c.height == 256 && c.width == 128 { fullCrops += 1 } else {
                #expect(area > 0.6 && area <= 1.0 && aspect >= 1.95 && aspect <= 3.05, "crop \(c)")
            }
            if draw.flipped { flips += 1 }
            if let e = draw.erased {
                erasures += 1
                #expect(e.top + e.height <= 256 && e.left + e.width <= 128)
                // The erased rectangle is exactly 0 (the mean after normalisation).
                for y in e.top..<(e.top + e.height) { #expect(out[(y * 128 + e.left) * 3] == 0) }
            }
        }
        #expect(flips > 100 && flips < 200, "flips \(flips)")
        #expect(erasures > 100 && erasures < 200, "erasures \(erasures)")
        #expect(fullCrops < 300)
    }

    @Test func flipMirrorsTheImage() {
        // With crop and erasing disabled, a flipped output is the mirror of the unflipped one.
        var s = TransformSettings()
        s.cropAreaScale = 1.0...1.0; s.cropAspectHW = 2.0...2.0; s.erasingProbability = 0
        let t = ImageTransform(settings: s)
        let plain = t.evaluation(image)
        var sawFlip = false, sawPlain = false
        for key in 0..<20 {
            var out = [Float](repeating: 0, count: s.imageSize)
            let draw = out.withUnsafeMutableBufferPointer { t.training(image, key: UInt64(key), into: $0.baseAddress!) }
            #expect(draw.crop == (0, 0, 256, 128))
            if draw.flipped {
                sawFlip = true
                #expect(out[0] == plain[127 * 3] && out[(5 * 128 + 3) * 3 + 2] == plain[(5 * 128 + 124) * 3 + 2])
            } else {
                sawPlain = true
                #expect(out == plain)
            }
        }
        #expect(sawFlip && sawPlain)
    }

    @Test func keysAreIndependentOfCoordinatesOrder() {
        #expect(CounterRandom.key(1, 0, 1, 2) != CounterRandom.key(1, 0, 2, 1))
        #expect(CounterRandom.key(1, 0, 1, 2) == CounterRandom.key(1, 0, 1, 2))
        var r = CounterRandom(key: 7)
        for _ in 0..<1000 { let v = r.below(5); #expect(v >= 0 && v < 5) }
    }
}
