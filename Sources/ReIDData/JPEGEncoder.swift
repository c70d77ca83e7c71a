// JPEG encoding with TurboJPEG (used to write the synthetic dataset).
import CTurboJPEG

// MARK: - Errors

/// A JPEG could not be encoded; the message names what was wrong.
public struct JPEGEncodeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

// MARK: - Encoding

/// Encodes an interleaved 8-bit RGB image (row-major, `width * height * 3` bytes) as a baseline JPEG.
/// Chroma is not subsampled (4:4:4) so thin coloured details survive at person-crop sizes;
/// `quality` is the usual 1...100 scale. The output is deterministic for a given input.
public func encodeJPEG(rgb: [UInt8], width: Int, height: Int, quality: Int = 90) throws -> [UInt8] {
    guard width > 0, height > 0 else {
        throw JPEGEncodeError("encodeJPEG: image size \(width)x\(height) must be positive")
    }
    guard rgb.count == width * height * 3 else {
        throw JPEGEncodeError("encodeJPEG: \(rgb.count) bytes given for a \(width)x\(height) RGB image (expected \(width * height * 3))")
    }
    guard (1...100).contains(quality) else {
        throw JPEGEncodeError("encodeJPEG: quality \(quality) is outside 1...100")
    }
    guard let handle = tjInitCompress() else {
        throw JPEGEncodeError("encodeJPEG: tjInitCompress failed")
    }
    defer { tjDestroy(handle) }

    var jpegBuffer: UnsafeMutablePointer<UInt8>? = nil
    var jpegSize: UInt = 0
    defer { if let jpegBuffer { tjFree(jpegBuffer) } }
    let status = rgb.withUnsafeBufferPointer { source in
        tjCompress2(handle, source.baseAddress, Int32(width), Int32(width * 3), Int32(height),
                    Int32(TJPF_RGB.rawValue), &jpegBuffer, &jpegSize,
                    Int32(TJSAMP_444.rawValue), Int32(quality), Int32(TJFLAG_ACCURATEDCT))
    }
    guard status == 0, let jpegBuffer else {
        let message = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
        throw JPEGEncodeError("encodeJPEG: tjCompress2 failed on a \(width)x\(height) image: \(message)")
    }
    return Array(UnsafeBufferPointer(start: jpegBuffer, count: Int(jpegSize)))
}
