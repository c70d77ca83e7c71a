import CTurboJPEG
import Foundation
@testable import ReIDData

/// Writes real JPEG files for the tests with TurboJPEG's compressor.
enum TestJPEG {
    /// A smooth colour pattern (varies with `seed`) so JPEG round trips stay close.
    static func pattern(width: Int, height: Int, seed: Int) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                p[i] = UInt8((x * 255 / max(width - 1, 1) + seed * 37) % 256)
                p[i + 1] = UInt8((y * 255 / max(height - 1, 1) + seed * 59) % 256)
                p[i + 2] = UInt8((seed * 91 + 40) % 256)
            }
        }
        return p
    }

    /// JPEG bytes of an RGB (or, when `gray`, single-channel) buffer.
    static func encode(width: Int, height: Int, pixels: [UInt8], gray: Bool = false, quality: Int32 = 95) -> Data {
        let handle = tjInitCompress()!
        defer { tjDestroy(handle) }
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let format = gray ? TJPF_GRAY : TJPF_RGB
        let samp = gray ? TJSAMP_GRAY : TJSAMP_420
        let r = pixels.withUnsafeBufferPointer {
            tjCompress2(handle, $0.baseAddress, Int32(width), 0, Int32(height), Int32(format.rawValue), &buffer, &size,
                        Int32(samp.rawValue), quality, 0)
        }
        precondition(r == 0, "tjCompress2 failed: \(String(cString: tjGetErrorStr2(handle)))")
        defer { tjFree(buffer) }
        return Data(bytes: buffer!, count: Int(size))
    }

    /// Writes a width x height JPEG with the pattern of `seed`.
    @discardableResult
    static func write(_ path: String, width: Int = 64, height: Int = 128, seed: Int = 0, gray: Bool = false) -> Data {
        var pixels = pattern(width: width, height: height, seed: seed)
        if gray { pixels = stride(from: 0, to: pixels.count, by: 3).map { pixels[$0] } }
        let data = encode(width: width, height: height, pixels: pixels, gray: gray)
        try! FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try! data.write(to: URL(fileURLWithPath: path))
        return data
    }

    /// Writes the first half of a valid JPEG: a truncated file.
    static func writeTruncated(_ path: String, seed: Int = 0) {
        let data = write(path, seed: seed)
        try! data.prefix(data.count / 2).write(to: URL(fileURLWithPath: path))
    }
}
