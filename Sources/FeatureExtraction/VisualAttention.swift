import MancsModel
import ReIDData
import ReIDEval

// MARK: - Attention masks as heat maps

/// One image's attention mask of one FAB stage, reduced to a map: the mean
/// over channels of M at each position, [height, width] row-major.
public struct AttentionMap: Sendable {
    public let stage: Int
    public let height: Int, width: Int
    public let values: [Float]
    public var range: ClosedRange<Float> { (values.min() ?? 0)...(values.max() ?? 0) }

    /// Image `item` of a mask of the last forward.
    public init(_ mask: AttentionMask, item: Int) {
        precondition(item >= 0 && item < mask.batch, "AttentionMap: item \(item) outside the batch of \(mask.batch)")
        stage = mask.stage; height = mask.height; width = mask.width
        let c = mask.channels, spatial = mask.height * mask.width
        var out = [Float](repeating: 0, count: spatial)
        let base = mask.values + item * spatial * c
        for p in 0..<spatial {
            let row = base + p &* c
            var s: Float = 0
            for k in 0..<c { s += row[k] }
            out[p] = s / Float(c)
        }
        values = out
    }

    public init(stage: Int, height: Int, width: Int, values: [Float]) {
        precondition(values.count == height * width, "AttentionMap: \(values.count) values for \(height)x\(width)")
        self.stage = stage; self.height = height; self.width = width; self.values = values
    }

    /// Bilinear upsampling to h x w (half-pixel centres, as PyTorch's
    /// `interpolate(mode="bilinear", align_corners=False)`).
    public func upsampled(height h: Int, width w: Int) -> [Float] {
        var out = [Float](repeating: 0, count: h * w)
        let sy = Float(height) / Float(h), sx = Float(width) / Float(w)
        for y in 0..<h {
            let fy = max((Float(y) + 0.5) * sy - 0.5, 0)
            let y0 = min(Int(fy), height - 1), y1 = min(y0 + 1, height - 1), ty = fy - Float(y0)
            for x in 0..<w {
                let fx = max((Float(x) + 0.5) * sx - 0.5, 0)
                let x0 = min(Int(fx), width - 1), x1 = min(x0 + 1, width - 1), tx = fx - Float(x0)
                let top = values[y0 * width + x0] * (1 - tx) + values[y0 * width + x1] * tx
                let bottom = values[y1 * width + x0] * (1 - tx) + values[y1 * width + x1] * tx
                out[y * w + x] = top * (1 - ty) + bottom * ty
            }
        }
        return out
    }

    /// The map as a heat map blended over `image` (same size as the output):
    /// values stretched from the map's own minimum (blue) to maximum (red) with
    /// the jet colour map, mixed half and half with the picture.
    public func overlay(on image: RGB8Image, opacity: Float = 0.5) -> RGB8Image {
        let up = upsampled(height: image.height, width: image.width)
        let lo = range.lowerBound, span = range.upperBound - range.lowerBound
        var pixels = image.pixels
        for p in 0..<up.count {
            let t = span > 0 ? (up[p] - lo) / span : 0.5
            let heat = jet(t)
            for k in 0..<3 {
                let v = (1 - opacity) * Float(image.pixels[p * 3 + k]) + opacity * heat[k]
                pixels[p * 3 + k] = UInt8(max(0, min(255, v.rounded())))
            }
        }
        return RGB8Image(width: image.width, height: image.height, pixels: pixels)
    }
}

/// The jet colour map at t in 0...1: dark blue, blue, cyan, yellow, red, dark red (0...255).
func jet(_ t: Float) -> [Float] {
    let x = max(0, min(1, t)) * 4
    func ramp(_ centre: Float) -> Float { max(0, min(1, 1.5 - abs(x - centre))) * 255 }
    return [ramp(3), ramp(2), ramp(1)]
}
