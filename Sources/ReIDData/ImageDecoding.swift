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

    /// Largest side and pixel count decoded (8 MP: person crops are far
    /// smaller; a 16384² image would take 800 MB per loader thread).
    public static let maxSide = 8192, maxPixels = 1 << 23
    /// Largest file read.
    public static let maxFileBytes = 1 << 26

    /// Reads and decodes a JPEG file. Only regular files are read: a FIFO or a
    /// device named like a JPEG would block a loader thread forever.
    public func decode(file path: String) throws -> RGB8Image {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ImageDecodeError(path: path, reason: "cannot read the file") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw ImageDecodeError(path: path, reason: "not a regular file") }
        guard st.st_size <= Self.maxFileBytes else {
            throw ImageDecodeError(path: path, reason: "\(st.st_size) bytes: larger than any image this reader takes (\(Self.maxFileBytes))")
        }
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
            guard width > 0, height > 0, width <= Self.maxSide, height <= Self.maxSide,
                  Int(width) * Int(height) <= Self.maxPixels else {
                throw ImageDecodeError(path: name, reason: "implausible JPEG size \(width)x\(height) "
                                       + "(at most \(Self.maxSide) a side and \(Self.maxPixels) pixels)")
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
