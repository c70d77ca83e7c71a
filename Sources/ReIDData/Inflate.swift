import CZlib

// MARK: zlib inflate (RFC 1950), by zlib itself

/// Bytes one compressed MAT-file element may inflate to: the protocol files
/// mancs reads hold a few megabytes; a 100-byte "bomb" must not ask for more.
let maxInflatedBytes = 1 << 28

/// Decompresses a zlib stream (MATLAB's `miCOMPRESSED` elements), refusing
/// output beyond `limit` bytes. zlib checks the stream and its Adler-32.
func zlibInflate(_ input: [UInt8], limit: Int = maxInflatedBytes) throws -> [UInt8] {
    guard input.count >= 6 else { throw MatFileError("compressed element: not a zlib stream") }
    var stream = z_stream()
    guard mancs_inflate_init(&stream) == Z_OK else { throw MatFileError("compressed element: zlib cannot start") }
    defer { inflateEnd(&stream) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    return try input.withUnsafeBufferPointer { source in
        stream.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
        stream.avail_in = UInt32(source.count)
        while true {
            let status = chunk.withUnsafeMutableBufferPointer { c -> Int32 in
                stream.next_out = c.baseAddress
                stream.avail_out = UInt32(c.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            let produced = chunk.count - Int(stream.avail_out)
            guard out.count + produced <= limit else {
                throw MatFileError("compressed element: inflates to more than \(limit) bytes: refused")
            }
            out.append(contentsOf: chunk[0..<produced])
            switch status {
            case Z_STREAM_END: return out
            case Z_OK: if produced == 0 && stream.avail_in == 0 { throw MatFileError("compressed element: truncated zlib stream") }
            case Z_BUF_ERROR: throw MatFileError("compressed element: truncated zlib stream")
            case Z_NEED_DICT: throw MatFileError("compressed element: zlib preset dictionaries are not supported")
            default:
                let reason = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                throw MatFileError("compressed element: damaged zlib stream (\(reason))")
            }
        }
    }
}
