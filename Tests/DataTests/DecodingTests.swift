import Foundation
import Testing
import TestSupport
@testable import ReIDData

@Suite struct DecodingTests {
    @Test func rgbRoundTripIsClose() throws {
        let dir = SharedFiles.temporaryDirectory("decode")
        let path = dir.path + "/a.jpg"
        TestJPEG.write(path, width: 64, height: 128, seed: 3)
        let image = try JPEGDecoder().decode(file: path)
        #expect(image.width == 64 && image.height == 128)
        let expected = TestJPEG.pattern(width: 64, height: 128, seed: 3)
        let meanError = zip(image.pixels, expected).map { abs(Double($0) - Double($1)) }.reduce(0, +) / Double(expected.count)
        #expect(meanError < 4, "mean absolute error \(meanError)")
    }

    @Test func grayscaleBecomesRGB() throws {
        let dir = SharedFiles.temporaryDirectory("decode")
        let path = dir.path + "/g.jpg"
        TestJPEG.write(path, width: 32, height: 48, seed: 1, gray: true)
        let image = try JPEGDecoder().decode(file: path)
        #expect(image.pixels.count == 32 * 48 * 3)
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            #expect(image.pixels[i] == image.pixels[i + 1] && image.pixels[i] == image.pixels[i + 2])
        }
        #expect(Set(image.pixels).count > 10, "a gradient, not a flat image")
    }

    @Test func extraneousBytesAreOnlyAWarning() throws {
        // Two stray bytes after the JFIF segment: libjpeg warns "extraneous bytes before marker", PIL decodes.
        let data = TestJPEG.encode(width: 16, height: 16, pixels: TestJPEG.pattern(width: 16, height: 16, seed: 2))
        #expect(data[data.startIndex + 2] == 0xFF && data[data.startIndex + 3] == 0xE0)
        let app0End = data.startIndex + 4 + (Int(data[data.startIndex + 4]) << 8 | Int(data[data.startIndex + 5]))
        let padded = data[..<app0End] + Data([0x00, 0x11]) + data[app0End...]
        let a = try JPEGDecoder().decode(data: data), b = try JPEGDecoder().decode(data: padded)
        #expect(a == b)
    }

    @Test func aFIFONamedLikeAJPEGIsRefusedAtOnce() throws {
        let path = SharedFiles.temporaryDirectory("decode").path + "/fifo.jpg"
        #expect(mkfifo(path, 0o644) == 0)
        let error = #expect(throws: ImageDecodeError.self) { try JPEGDecoder().decode(file: path) }
        #expect(error?.reason.contains("not a regular file") == true, "\(String(describing: error))")
    }

    @Test func hugeDimensionsAreRefusedBeforeDecoding() throws {
        // A valid 16x16 JPEG whose SOF0 header is patched to say 16384x16384.
        var data = [UInt8](TestJPEG.encode(width: 16, height: 16, pixels: TestJPEG.pattern(width: 16, height: 16, seed: 2)))
        let sof = try #require((0..<(data.count - 9)).first { data[$0] == 0xFF && data[$0 + 1] == 0xC0 })
        data[sof + 5] = 0x40; data[sof + 6] = 0x00  // height 16384
        data[sof + 7] = 0x40; data[sof + 8] = 0x00  // width 16384
        let error = #expect(throws: ImageDecodeError.self) { try JPEGDecoder().decode(data: Data(data)) }
        #expect(error?.reason.contains("implausible JPEG size 16384x16384") == true, "\(String(describing: error))")
    }

    @Test func truncatedAndGarbageThrow() throws {
        let dir = SharedFiles.temporaryDirectory("decode")
        let t = dir.path + "/t.jpg"
        TestJPEG.writeTruncated(t)
        #expect(throws: ImageDecodeError.self) { try JPEGDecoder().decode(file: t) }
        let g = dir.path + "/g.jpg"
        try Data("not a jpeg at all".utf8).write(to: URL(fileURLWithPath: g))
        #expect(throws: ImageDecodeError.self) { try JPEGDecoder().decode(file: g) }
        #expect(throws: ImageDecodeError.self) { try JPEGDecoder().decode(file: dir.path + "/missing.jpg") }
        do { _ = try JPEGDecoder().decode(file: t); Issue.record("no error") } catch let e as ImageDecodeError {
            #expect(e.description.contains("t.jpg"))
        }
    }
}

@Suite struct ResizeTests {
    func resize(_ src: [Float], _ w: Int, _ h: Int, to ow: Int, _ oh: Int, box: (Double, Double, Double, Double)? = nil) -> [Float] {
        var out = [Float](repeating: -1, count: ow * oh * 3)
        var temp: [Float] = []
        let b = box ?? (0, 0, Double(w), Double(h))
        src.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                resampleRGB(s.baseAddress!, width: w, height: h, box: (b.0, b.1, b.2, b.3), into: o.baseAddress!, width: ow, height: oh, temp: &temp)
            }
        }
        return out
    }

    @Test func doublingMatchesHalfPixelBilinear() {
        // One row, two pixels a, b -> four: PIL gives a, 3/4 a + 1/4 b, 1/4 a + 3/4 b, b.
        let src: [Float] = [0, 10, 20, 100, 110, 120]
        let out = resize(src, 2, 1, to: 4, 1)
        let expected: [Float] = [0, 10, 20, 25, 35, 45, 75, 85, 95, 100, 110, 120]
        for (a, b) in zip(out, expected) { #expect(abs(a - b) < 1e-4) }
    }

    @Test func identityAndConstant() {
        var rng = SplitMix64(seed: 4)
        let src = (0..<(5 * 7 * 3)).map { _ in Float(rng.next() % 256) }
        let same = resize(src, 5, 7, to: 5, 7)
        for (a, b) in zip(same, src) { #expect(abs(a - b) < 1e-3) }
        let flat = [Float](repeating: 42, count: 9 * 4 * 3)
        for v in resize(flat, 4, 9, to: 13, 31) { #expect(abs(v - 42) < 1e-3) }
        for v in resize(flat, 4, 9, to: 2, 3) { #expect(abs(v - 42) < 1e-3) } // shrinking (antialiased) too
    }

    @Test func boxSelectsRegion() {
        // Left half red-ish, right half blue-ish: resampling the right half gives only the right colour.
        var src = [Float](repeating: 0, count: 8 * 2 * 3)
        for y in 0..<2 { for x in 0..<8 { src[(y * 8 + x) * 3] = x < 4 ? 200 : 10 } }
        let right = resize(src, 8, 2, to: 4, 2, box: (4, 0, 4, 2))
        for i in stride(from: 0, to: right.count, by: 3) { #expect(abs(right[i] - 10) < 1e-3) }
    }
}
