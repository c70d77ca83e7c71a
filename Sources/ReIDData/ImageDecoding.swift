import CTurboJPEG
import Foundation

// MARK: Decoded images

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (H x W x 3).
public struct RGB8Image: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGB8Image: \(pixels.count) bytes for \(height)x\(width)x3")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// An image that could not be read or decoded.
public struct ImageDecodeError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

// MARK: JPEG decoding

/// Decodes JPEG files to RGB with libjpeg-turbo's defaults (accurate integer
/// DCT, fancy upsampling: the pixels PIL gives). Grayscale and CMYK sources are
/// converted to RGB by the library. One decoder per thread: the TurboJPEG
/// handle is not thread-safe.
public final class JPEGDecoder {
    private let handle: tjhandle

    public init() {
        guard let h = tjInitDecompress() else { fatalError("TurboJPEG: cannot create a decompressor (out of memory)") }
        handle = h
    }

    deinit { tjDestroy(handle) }

    /// Reads and decodes a JPEG file.
    public func decode(file path: String) throws -> RGB8Image {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageDecodeError(path: path, reason: "cannot read the file")
        }
        return try decode(data: data, name: path)
    }

    /// Decodes JPEG bytes. A truncated file (which libjpeg would pad with grey)
    /// is an error, as in PIL; other libjpeg warnings on a fully decoded image
    /// (e.g. extraneous bytes before a marker) are ignored, as PIL does.
    public func decode(data: Data, name: String = "<memory>") throws -> RGB8Image {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> RGB8Image in
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress, raw.count > 0 else {
                throw ImageDecodeError(path: name, reason: "empty file")
            }
            var width: Int32 = 0, height: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
            if tjDecompressHeader3(handle, base, UInt(raw.count), &width, &height, &subsamp, &colorspace) != 0, !onlyHarmlessWarning() {
                throw ImageDecodeError(path: name, reason: "not a JPEG image (\(errorText()))")
            }
            guard width > 0, height > 0, Int(width) * Int(height) <= 1 << 28 else {
                throw ImageDecodeError(path: name, reason: "implausible JPEG size \(width)x\(height)")
            }
            var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
            let r = pixels.withUnsafeMutableBufferPointer {
                tjDecompress2(handle, base, UInt(raw.count), $0.baseAddress, width, 0, height, Int32(TJPF_RGB.rawValue), 0)
            }
            if r != 0, !onlyHarmlessWarning() {
                throw ImageDecodeError(path: name, reason: "corrupt or truncated JPEG (\(errorText()))")
            }
            return RGB8Image(width: Int(width), height: Int(height), pixels: pixels)
        }
    }

    /// The last call only warned, and not about a truncated file.
    private func onlyHarmlessWarning() -> Bool {
        tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) && !errorText().contains("Premature end")
    }

    private func errorText() -> String {
        guard let s = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: s)
    }
}
