import Foundation
import ReIDData
import ReIDEval

// MARK: - An RGB picture to draw on

/// An 8-bit colour.
public struct RGBColor: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }

    public static let white = RGBColor(255, 255, 255)
    /// Border of a correct match.
    public static let match = RGBColor(0, 176, 0)
    /// Border of a wrong match.
    public static let mismatch = RGBColor(224, 0, 0)
    /// Border of the query.
    public static let query = RGBColor(40, 90, 220)
}

/// A picture being composed: rectangles and images pasted at pixel positions.
struct RGBCanvas {
    let width: Int, height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int, background: RGBColor = .white) {
        precondition(width > 0 && height > 0, "RGBCanvas: empty size \(width)x\(height)")
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    /// Fills a rectangle (clipped to the canvas).
    mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ c: RGBColor) {
        let x0 = max(x, 0), y0 = max(y, 0), x1 = min(x + w, width), y1 = min(y + h, height)
        guard x0 < x1, y0 < y1 else { return }
        pixels.withUnsafeMutableBufferPointer { p in
            for yy in y0..<y1 {
                var i = (yy * width + x0) * 3
                for _ in x0..<x1 { p[i] = c.r; p[i + 1] = c.g; p[i + 2] = c.b; i += 3 }
            }
        }
    }

    /// Pastes `image` with its top-left corner at (x, y); must fit.
    mutating func paste(_ image: RGB8Image, x: Int, y: Int) {
        precondition(x >= 0 && y >= 0 && x + image.width <= width && y + image.height <= height,
                     "RGBCanvas: a \(image.width)x\(image.height) image at (\(x), \(y)) leaves the \(width)x\(height) canvas")
        let rowBytes = image.width * 3
        pixels.withUnsafeMutableBufferPointer { dst in
            image.pixels.withUnsafeBufferPointer { src in
                for yy in 0..<image.height {
                    (dst.baseAddress! + ((y + yy) * width + x) * 3).update(from: src.baseAddress! + yy * rowBytes, count: rowBytes)
                }
            }
        }
    }

    /// Pastes `image` inside a frame of `border` pixels of colour `c` whose outer
    /// top-left corner is (x, y).
    mutating func paste(_ image: RGB8Image, x: Int, y: Int, border: Int, _ c: RGBColor) {
        fill(x: x, y: y, width: image.width + 2 * border, height: image.height + 2 * border, c)
        paste(image, x: x + border, y: y + border)
    }

    var image: RGB8Image { RGB8Image(width: width, height: height, pixels: pixels) }
}

// MARK: - Display tiles

/// Turns dataset images into display tiles of a fixed size: the evaluation
/// transform's bilinear resize (the pixels the network sees, at tile size),
/// mapped back from the ImageNet normalisation to 0...255. One per thread.
final class TileMaker {
    let transform: ImageTransform
    let decoder = JPEGDecoder()
    private var scratch: [Float]

    init(height: Int, width: Int) {
        transform = ImageTransform(settings: TransformSettings(height: height, width: width))
        scratch = [Float](repeating: 0, count: height * width * 3)
    }

    func tile(_ image: ReIDImage) throws -> RGB8Image {
        let s = transform.settings
        let decoded = try decodeImage(image, decoder: decoder)
        scratch.withUnsafeMutableBufferPointer { transform.evaluation(decoded, into: $0.baseAddress!) }
        var pixels = [UInt8](repeating: 0, count: scratch.count)
        for i in 0..<scratch.count {
            let c = i % 3
            let v = (scratch[i] * s.std[c] + s.mean[c]) * 255
            pixels[i] = UInt8(max(0, min(255, v.rounded())))
        }
        return RGB8Image(width: s.width, height: s.height, pixels: pixels)
    }
}

// MARK: - JPEG output

/// Writes an image as a JPEG file (ReIDData's TurboJPEG encoder: 4:4:4, so the
/// thin coloured frames stay crisp).
func writeJPEG(_ image: RGB8Image, to path: String, quality: Int = 90) throws {
    let bytes = try encodeJPEG(rgb: image.pixels, width: image.width, height: image.height, quality: quality)
    do { try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
        throw ExtractionError("\(path): cannot write the picture (\(error.localizedDescription))")
    }
}
