import Foundation
import MancsSettings  // SettingsError

// TensorBoard scalars without TensorFlow or a protobuf library: an event file is
// a TFRecord stream (per record: uint64 length, masked CRC-32C of the length,
// the bytes, masked CRC-32C of the bytes, little-endian) of `Event` protobufs.
// Only a few fields are needed, encoded by hand:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }

/// Appends scalar summaries to `DIR/events.out.tfevents.<seconds>.<host>`.
final class TensorBoardWriter {
    private let handle: FileHandle
    let path: String

    /// Creates the directory and a new event file (a resumed run adds a file; TensorBoard reads them all).
    init(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        path = (directory as NSString).appendingPathComponent(
            "events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid())")
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw SettingsError("cannot create \(path)")
        }
        handle = h
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.string(3, "brain.Event:2")
        write(record: event.bytes)
    }

    /// One event holding `scalars` (tag -> value) at `step`.
    func scalars(_ scalars: [(String, Double)], step: Int) {
        var summary = ProtoWriter()
        for (tag, value) in scalars {
            var v = ProtoWriter()
            v.string(1, tag)
            v.float(2, Float(value))
            summary.message(1, v.bytes)
        }
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary.bytes)
        write(record: event.bytes)
    }

    func close() {
        try? handle.synchronize()
        try? handle.close()
    }

    private func write(record data: [UInt8]) {
        var out: [UInt8] = []
        let length = littleEndian(UInt64(data.count))
        out += length
        out += littleEndian(maskedCRC32C(length))
        out += data
        out += littleEndian(maskedCRC32C(data))
        handle.write(Data(out))
    }
}

/// The few protobuf wire encodings an Event needs.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func rawVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }
    mutating func varint(_ field: Int, _ value: UInt64) { key(field, 0); rawVarint(value) }
    mutating func double(_ field: Int, _ value: Double) { key(field, 1); bytes += littleEndian(value.bitPattern) }
    mutating func float(_ field: Int, _ value: Float) { key(field, 5); bytes += littleEndian(value.bitPattern) }
    mutating func message(_ field: Int, _ payload: [UInt8]) { key(field, 2); rawVarint(UInt64(payload.count)); bytes += payload }
    mutating func string(_ field: Int, _ text: String) { message(field, Array(text.utf8)) }
}

func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
let crc32cTable: [UInt32] = (0..<256).map { n in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
    return c
}

func crc32c(_ data: [UInt8]) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in data { c = crc32cTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}

/// TFRecord's masking: rotate right by 15 and add a constant.
func maskedCRC32C(_ data: [UInt8]) -> UInt32 {
    let c = crc32c(data)
    return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
}
