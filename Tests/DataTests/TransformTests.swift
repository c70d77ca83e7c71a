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
        #expect(SplitMix64.key(1, 0, 1, 2) != SplitMix64.key(1, 0, 2, 1))
        #expect(SplitMix64.key(1, 0, 1, 2) == SplitMix64.key(1, 0, 1, 2))
        var r = SplitMix64(seed: 7)
        for _ in 0..<1000 { let v = r.below(5); #expect(v >= 0 && v < 5) }
    }

    /// The augmentation's draws against the law torchvision's transforms give
    /// (RandomResizedCrop, RandomHorizontalFlip, RandomErasing with their
    /// 10-attempt searches), computed independently by quadrature over the
    /// attempt's (scale, log-ratio) square: histograms of crop area and aspect
    /// and of erased area, the erasing and flip rates, over 20,000 images.
    /// Sampling the ratio uniformly instead of log-uniformly, swapping h/w and
    /// w/h, clamping instead of retrying, or another fallback moves a histogram
    /// by 0.05 or more in total variation; a correct sampler stays below ~0.015.
    @Test func drawsFollowTorchvisionsLaw() {
        let H = 64, W = 32
        let s = TransformSettings(height: H, width: W)
        let t = ImageTransform(settings: s)
        let small = RGB8Image(width: W, height: H, pixels: TestJPEG.pattern(width: W, height: H, seed: 3))
        let area = Double(H * W)
        func rounded(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }  // Python's round
        func bin(_ x: Double, _ lo: Double, _ hi: Double, _ n: Int) -> Int { min(max(Int((x - lo) / (hi - lo) * Double(n)), 0), n - 1) }

        // One attempt's law by quadrature; the accepted draws follow it
        // conditioned on acceptance, and after 10 failures comes the fallback.
        let grid = 300
        var cropArea = [Double](repeating: 0, count: 10), cropAspect = [Double](repeating: 0, count: 12)
        var cropAccept = 0.0
        var eraseArea = [Double](repeating: 0, count: 10), eraseAccept = 0.0
        for i in 0..<grid {
            for j in 0..<grid {
                let u = (Double(i) + 0.5) / Double(grid), v = (Double(j) + 0.5) / Double(grid)
                // Crop: scale U(0.64, 1), ratio w/h log-uniform in (1/3, 1/2).
                let target = area * (0.64 + 0.36 * u), ratio = exp(log(1.0 / 3) + (log(0.5) - log(1.0 / 3)) * v)
                let w = rounded((target * ratio).squareRoot()), h = rounded((target / ratio).squareRoot())
                if w > 0 && w <= W && h > 0 && h <= H {
                    cropAccept += 1
                    cropArea[bin(Double(h * w) / area, 0.6, 1.0001, 10)] += 1
                    cropAspect[bin(Double(h) / Double(w), 1.9, 3.1, 12)] += 1
                }
                // Erasing: area U(0.02, 0.4), aspect h/w log-uniform in (0.3, 3.33); strictly inside.
                let et = area * (0.02 + 0.38 * u), aspect = exp(log(0.3) + (log(3.33) - log(0.3)) * v)
                let eh = rounded((et * aspect).squareRoot()), ew = rounded((et / aspect).squareRoot())
                if eh > 0 && ew > 0 && eh < H && ew < W {
                    eraseAccept += 1
                    eraseArea[bin(Double(eh * ew) / area, 0, 0.42, 10)] += 1
                }
            }
        }
        let cells = Double(grid * grid)
        let cropFallback = pow(1 - cropAccept / cells, 10)
        cropArea = cropArea.map { $0 / cropAccept * (1 - cropFallback) }
        cropAspect = cropAspect.map { $0 / cropAccept * (1 - cropFallback) }
        cropArea[bin(1, 0.6, 1.0001, 10)] += cropFallback          // the whole image
        cropAspect[bin(Double(H) / Double(W), 1.9, 3.1, 12)] += cropFallback
        let eraseRate = 0.5 * (1 - pow(1 - eraseAccept / cells, 10))
        eraseArea = eraseArea.map { $0 / eraseAccept }

        let draws = 20_000
        var gotArea = [Double](repeating: 0, count: 10), gotAspect = [Double](repeating: 0, count: 12)
        var gotErase = [Double](repeating: 0, count: 10)
        var flips = 0, erasures = 0, cropPosition = 0.0, cropPositions = 0
        var out = [Float](repeating: 0, count: s.imageSize)
        for key in 0..<draws {
            let d = out.withUnsafeMutableBufferPointer { t.training(small, key: UInt64(key) &* 0x9E37_79B9, into: $0.baseAddress!) }
            gotArea[bin(Double(d.crop.height * d.crop.width) / area, 0.6, 1.0001, 10)] += 1.0 / Double(draws)
            gotAspect[bin(Double(d.crop.height) / Double(d.crop.width), 1.9, 3.1, 12)] += 1.0 / Double(draws)
            if d.crop.height < H { cropPosition += Double(d.crop.top) / Double(H - d.crop.height); cropPositions += 1 }
            if d.flipped { flips += 1 }
            if let e = d.erased { erasures += 1; gotErase[bin(Double(e.height * e.width) / area, 0, 0.42, 10)] += 1 }
        }
        gotErase = gotErase.map { $0 / Double(max(erasures, 1)) }
        func tv(_ a: [Double], _ b: [Double]) -> Double { 0.5 * zip(a, b).reduce(0) { $0 + abs($1.0 - $1.1) } }
        #expect(tv(gotArea, cropArea) < 0.025, "crop area: got \(gotArea), torchvision's law \(cropArea)")
        #expect(tv(gotAspect, cropAspect) < 0.025, "crop aspect: got \(gotAspect), torchvision's law \(cropAspect)")
        #expect(tv(gotErase, eraseArea) < 0.025, "erased area: got \(gotErase), torchvision's law \(eraseArea)")
        // Rates within 5 standard errors.
        let n = Double(draws)
        #expect(abs(Double(flips) / n - 0.5) < 5 * (0.25 / n).squareRoot(), "flip rate \(Double(flips) / n)")
        #expect(abs(Double(erasures) / n - eraseRate) < 5 * (eraseRate * (1 - eraseRate) / n).squareRoot(),
                "erasing rate \(Double(erasures) / n), torchvision's \(eraseRate)")
        // The crop's top is uniform over the free rows: mean 1/2.
        #expect(abs(cropPosition / Double(cropPositions) - 0.5) < 0.02, "crop top / free rows: \(cropPosition / Double(cropPositions))")
    }
}
