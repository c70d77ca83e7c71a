import DeterministicRandom
import Foundation

// MARK: Settings

/// The image pipeline's settings (docs/method.md §4). Defaults are the paper's.
public struct TransformSettings: Sendable, Equatable {
    /// Network input size.
    public var height = 256
    public var width = 128
    /// Random resized crop: fraction of the area kept, and aspect ratio h/w.
    public var cropAreaScale: ClosedRange<Double> = 0.64...1.0
    public var cropAspectHW: ClosedRange<Double> = 2.0...3.0
    public var flipProbability = 0.5
    /// Random erasing: probability, fraction of the area, aspect ratio h/w.
    public var erasingProbability = 0.5
    public var erasingArea: ClosedRange<Double> = 0.02...0.4
    public var erasingAspect: ClosedRange<Double> = 0.3...3.33
    /// ImageNet normalisation, on pixel values scaled to [0, 1].
    public var mean: [Float] = [0.485, 0.456, 0.406]
    public var std: [Float] = [0.229, 0.224, 0.225]

    public init(height: Int = 256, width: Int = 128) {
        self.height = height
        self.width = width
    }

    /// Floats per image in the NHWC output.
    public var imageSize: Int { height * width * 3 }
}

/// Where the random parts of one training image landed (for tests and debugging).
public struct AugmentationDraw: Sendable, Equatable {
    /// Crop box in the resized image: top, left, height, width.
    public var crop: (top: Int, left: Int, height: Int, width: Int)
    public var flipped: Bool
    /// Erased rectangle (top, left, height, width), if any.
    public var erased: (top: Int, left: Int, height: Int, width: Int)?

    public static func == (a: Self, b: Self) -> Bool {
        a.crop == b.crop && a.flipped == b.flipped && a.erased?.top == b.erased?.top && a.erased?.left == b.erased?.left
            && a.erased?.height == b.erased?.height && a.erased?.width == b.erased?.width
    }
}

// MARK: Transform

/// Turns decoded images into normalised float tensors, H x W x 3 (NHWC per
/// image). Holds scratch buffers: use one per thread.
///
/// Training: resize to HxW; random resized crop (torchvision's
/// `RandomResizedCrop` parameter search: 10 attempts, else the whole image)
/// resized back to HxW; horizontal flip; normalise; random erasing
/// (torchvision's `RandomErasing` search), filled with 0 after normalisation,
/// i.e. with the ImageNet mean pixel. Every random number comes from
/// `SplitMix64(seed:)`, drawn in that order, so the result depends only on
/// the image and the key.
///
/// Evaluation: resize to HxW and normalise.
public final class ImageTransform {
    public let settings: TransformSettings
    private var source: [Float] = []
    private var resized: [Float]
    private var cropped: [Float]
    private var temp: [Float] = []
    private let scale: [Float]   // 1 / (255 * std)
    private let offset: [Float]  // -mean / std

    public init(settings: TransformSettings = TransformSettings()) {
        precondition(settings.height > 0 && settings.width > 0, "ImageTransform: empty output size \(settings.height)x\(settings.width)")
        self.settings = settings
        resized = [Float](repeating: 0, count: settings.imageSize)
        cropped = [Float](repeating: 0, count: settings.imageSize)
        scale = (0..<3).map { 1 / (255 * settings.std[$0]) }
        offset = (0..<3).map { -settings.mean[$0] / settings.std[$0] }
    }

    // MARK: Public entry points

    /// The evaluation transform into `output` (H*W*3 floats).
    public func evaluation(_ image: RGB8Image, into output: UnsafeMutablePointer<Float>) {
        resizeToInput(image)
        resized.withUnsafeBufferPointer { normalise($0.baseAddress!, flip: false, into: output) }
    }

    public func evaluation(_ image: RGB8Image) -> [Float] {
        var out = [Float](repeating: 0, count: settings.imageSize)
        out.withUnsafeMutableBufferPointer { evaluation(image, into: $0.baseAddress!) }
        return out
    }

    /// The training augmentation into `output` (H*W*3 floats), driven by `key`.
    @discardableResult
    public func training(_ image: RGB8Image, key: UInt64, into output: UnsafeMutablePointer<Float>) -> AugmentationDraw {
        let H = settings.height, W = settings.width
        var rng = SplitMix64(seed: key)
        resizeToInput(image)
        let crop = drawCrop(&rng)
        let flip = rng.uniform() < settings.flipProbability
        if crop.height == H && crop.width == W {
            resized.withUnsafeBufferPointer { normalise($0.baseAddress!, flip: flip, into: output) }
        } else {
            resized.withUnsafeBufferPointer { r in
                cropped.withUnsafeMutableBufferPointer { c in
                    resampleRGB(r.baseAddress!, width: W, height: H,
                                box: (Double(crop.left), Double(crop.top), Double(crop.width), Double(crop.height)),
                                into: c.baseAddress!, width: W, height: H, temp: &temp)
                }
            }
            cropped.withUnsafeBufferPointer { normalise($0.baseAddress!, flip: flip, into: output) }
        }
        let erased = drawErasing(&rng)
        if let e = erased {
            for y in e.top..<(e.top + e.height) {
                let row = output + (y * W + e.left) * 3
                for x in 0..<(e.width * 3) { row[x] = 0 }
            }
        }
        return AugmentationDraw(crop: crop, flipped: flip, erased: erased)
    }

    public func training(_ image: RGB8Image, key: UInt64) -> [Float] {
        var out = [Float](repeating: 0, count: settings.imageSize)
        out.withUnsafeMutableBufferPointer { _ = training(image, key: key, into: $0.baseAddress!) }
        return out
    }

    // MARK: Steps

    /// Bilinear resize of the decoded image into `resized` (values 0...255).
    private func resizeToInput(_ image: RGB8Image) {
        let n = image.pixels.count
        if source.count < n { source = [Float](repeating: 0, count: n) }
        source.withUnsafeMutableBufferPointer { s in
            image.pixels.withUnsafeBufferPointer { p in
                for i in 0..<n { s[i] = Float(p[i]) }
            }
        }
        let H = settings.height, W = settings.width
        source.withUnsafeBufferPointer { s in
            resized.withUnsafeMutableBufferPointer { r in
                resampleRGB(s.baseAddress!, width: image.width, height: image.height,
                            box: (0, 0, Double(image.width), Double(image.height)),
                            into: r.baseAddress!, width: W, height: H, temp: &temp)
            }
        }
    }

    /// (v / 255 - mean) / std, mirrored left-right when `flip`.
    private func normalise(_ src: UnsafePointer<Float>, flip: Bool, into dst: UnsafeMutablePointer<Float>) {
        let H = settings.height, W = settings.width
        let s0 = scale[0], s1 = scale[1], s2 = scale[2], o0 = offset[0], o1 = offset[1], o2 = offset[2]
        for y in 0..<H {
            let srow = src + y &* W &* 3
            let drow = dst + y &* W &* 3
            for x in 0..<W {
                let sx = flip ? (W &- 1 &- x) : x
                let p = srow + sx &* 3
                let q = drow + x &* 3
                q[0] = p[0] * s0 + o0; q[1] = p[1] * s1 + o1; q[2] = p[2] * s2 + o2
            }
        }
    }

    /// torchvision `RandomResizedCrop.get_params` with ratio w/h = 1 / (h/w).
    private func drawCrop(_ rng: inout SplitMix64) -> (top: Int, left: Int, height: Int, width: Int) {
        let H = settings.height, W = settings.width
        let area = Double(H * W)
        let logLo = log(1 / settings.cropAspectHW.upperBound), logHi = log(1 / settings.cropAspectHW.lowerBound)
        for _ in 0..<10 {
            let target = area * rng.uniform(settings.cropAreaScale.lowerBound, settings.cropAreaScale.upperBound)
            let ratio = exp(rng.uniform(logLo, logHi)) // w / h
            let w = Int((target * ratio).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / ratio).squareRoot().rounded(.toNearestOrEven))
            if w > 0 && w <= W && h > 0 && h <= H {
                let top = rng.below(H - h + 1)
                let left = rng.below(W - w + 1)
                return (top, left, h, w)
            }
        }
        // Fallback: the central crop closest to the allowed ratios.
        let inRatio = Double(W) / Double(H)
        var w = W, h = H
        if inRatio < exp(logLo) {
            h = Int((Double(W) / exp(logLo)).rounded(.toNearestOrEven))
        } else if inRatio > exp(logHi) {
            w = Int((Double(H) * exp(logHi)).rounded(.toNearestOrEven))
        }
        h = min(h, H); w = min(w, W)
        return ((H - h) / 2, (W - w) / 2, h, w)
    }

    /// torchvision `RandomErasing.get_params` (after the probability draw).
    private func drawErasing(_ rng: inout SplitMix64) -> (top: Int, left: Int, height: Int, width: Int)? {
        guard rng.uniform() < settings.erasingProbability else { return nil }
        let H = settings.height, W = settings.width
        let area = Double(H * W)
        let logLo = log(settings.erasingAspect.lowerBound), logHi = log(settings.erasingAspect.upperBound)
        for _ in 0..<10 {
            let target = area * rng.uniform(settings.erasingArea.lowerBound, settings.erasingArea.upperBound)
            let aspect = exp(rng.uniform(logLo, logHi)) // h / w
            let h = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let w = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if h > 0 && w > 0 && h < H && w < W {
                let top = rng.below(H - h + 1)
                let left = rng.below(W - w + 1)
                return (top, left, h, w)
            }
        }
        return nil
    }
}
