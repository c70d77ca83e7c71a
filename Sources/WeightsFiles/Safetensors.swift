import Foundation

// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {string: string}}
// and the raw little-endian tensor bytes, offsets relative to the end of the header.
//
// This target reads files from elsewhere, so it keeps Swift's bounds and
// overflow checks (no -Ounchecked): every length, offset, dim and size product
// is validated against the file before a byte of tensor data is touched.

public struct SafetensorsError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The element types of the format. F32, F16, BF16 and F64 are read as Float;
/// the others are known (their byte sizes are checked) but not converted.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    public var isFloat: Bool { [.f64, .f32, .f16, .bf16].contains(self) }
}

/// A parsed safetensors file (read whole into memory).
public struct SafetensorsFile: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        /// Bytes of the payload (after the header); validated to lie inside it and,
        /// for a known dtype, to be exactly elements x element size.
        public var byteRange: Range<Int>
        /// Product of the shape (1 for a scalar), overflow-checked.
        public var elementCount: Int
    }

    /// Caps on what a header may ask for (the reference implementation caps the
    /// header at 100 MB; no real tensor has more than 8 dims).
    public static let maxHeaderBytes = 100_000_000
    public static let maxRank = 8
    /// Files are read whole: at most 8 GiB (a ResNet-50 export is 100 MB).
    public static let maxFileBytes = 8 << 30

    public let path: String
    /// Tensors in file-offset order.
    public let entries: [Entry]
    /// The `__metadata__` object (string to string), empty if absent.
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        // Only a regular file of sane size is read whole (a FIFO would block, a
        // terabyte file would be allocated).
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        if let type = attributes?[.type] as? FileAttributeType, type != .typeRegular {
            throw SafetensorsError("\(url.path): not a regular file")
        }
        if let size = attributes?[.size] as? Int, size > Self.maxFileBytes {
            throw SafetensorsError("\(url.path): \(size) bytes is over the \(Self.maxFileBytes)-byte limit for a weights file")
        }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SafetensorsError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        try self.init(data: data, path: url.path)
    }

    /// Parses `data` (the whole file); `path` names it in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        self.data = data
        func bad(_ s: String) -> SafetensorsError { SafetensorsError("\(path): \(s)") }
        guard data.count >= 8 else { throw bad("too short for a safetensors header (\(data.count) bytes)") }
        var headerLength: UInt64 = 0
        for (i, byte) in data.prefix(8).enumerated() { headerLength |= UInt64(byte) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw bad("header length \(headerLength) exceeds the file size \(data.count)")
        }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw bad("header length \(headerLength) is over the \(Self.maxHeaderBytes)-byte limit")
        }
        let start = data.startIndex
        dataStart = 8 + Int(headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: start + 8..<start + dataStart)) } catch {
            throw bad("header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw bad("header is not a JSON object") }
        var metadata: [String: String] = [:]
        if let meta = header["__metadata__"] {
            guard let object = meta as? [String: Any] else { throw bad("__metadata__ is not a JSON object") }
            for (k, v) in object {
                guard let s = v as? String else { throw bad("__metadata__ value \(k) is not a string") }
                metadata[k] = s
            }
        }
        self.metadata = metadata
        let payload = data.count - dataStart
        var entries: [Entry] = []
        for (name, value) in header where name != "__metadata__" {
            // `as? Int` on a JSON number fails for fractions and out-of-range values.
            guard let d = value as? [String: Any], let dtype = d["dtype"] as? String,
                  let shapeValues = d["shape"] as? [Any], let offsetValues = d["data_offsets"] as? [Any],
                  offsetValues.count == 2 else {
                throw bad("tensor \(name) has a malformed header entry")
            }
            let shape = shapeValues.compactMap { $0 as? Int }, offsets = offsetValues.compactMap { $0 as? Int }
            guard shape.count == shapeValues.count, offsets.count == 2 else {
                throw bad("tensor \(name): shape and data_offsets must be integers")
            }
            guard shape.count <= Self.maxRank, shape.allSatisfy({ $0 >= 0 }) else {
                throw bad("tensor \(name) has shape \(shape): at most \(Self.maxRank) non-negative dims")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload else {
                throw bad("tensor \(name) has data offsets \(offsets) outside the \(payload)-byte payload")
            }
            var elements = 1
            for x in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: x)
                guard !overflow else { throw bad("tensor \(name) has shape \(shape): its size overflows") }
                elements = p
            }
            if let known = SafetensorsDType(rawValue: dtype) {
                let (bytes, overflow) = elements.multipliedReportingOverflow(by: known.size)
                guard !overflow else { throw bad("tensor \(name) has shape \(shape): its size overflows") }
                guard offsets[1] - offsets[0] == bytes else {
                    throw bad("tensor \(name) \(dtype) \(shape) needs \(bytes) bytes, has \(offsets[1] - offsets[0])")
                }
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1],
                                 elementCount: elements))
        }
        self.entries = entries.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        for (a, b) in zip(self.entries, self.entries.dropFirst()) where a.byteRange.overlaps(b.byteRange) {
            throw bad("tensors \(a.name) and \(b.name) overlap in the payload")
        }
    }

    /// The entry called `name`, if any.
    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// A tensor's values as Float (F32, F16, BF16 and F64 are converted).
    public func floats(_ e: Entry) throws -> [Float] {
        guard let dt = SafetensorsDType(rawValue: e.dtype), dt.isFloat else {
            throw SafetensorsError("\(path): tensor \(e.name) has unsupported dtype \(e.dtype) (F32, F16, BF16, F64 are read)")
        }
        let n = e.elementCount
        // The entry came from this file's own parse: its range lies in the payload
        // and holds exactly n elements. Checked again, cheaply, before the raw loads.
        precondition(e.byteRange.upperBound <= data.count - dataStart && e.byteRange.count == n * dt.size,
                     "\(e.name): entry does not belong to \(path)")
        var out = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress!.advanced(by: dataStart + e.byteRange.lowerBound)
            switch dt {
            case .f32:
                for i in 0..<n { out[i] = Float(bitPattern: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self).littleEndian) }
            case .bf16:
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
            case .f16:
                for i in 0..<n { out[i] = halfToFloat(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) }
            case .f64:
                for i in 0..<n { out[i] = Float(Double(bitPattern: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
            default:
                break
            }
        }
        return out
    }

    // MARK: Writing

    /// One tensor to write: values in file layout, as Float (written in the
    /// file's float dtype) or as Int64 (written as I64).
    public struct Tensor: Sendable {
        public enum Values: Sendable { case floats([Float]), int64([Int64]) }
        public var name: String
        public var shape: [Int]
        public var values: Values
        public init(name: String, shape: [Int], values: Values) {
            self.name = name; self.shape = shape; self.values = values
        }
        public init(name: String, shape: [Int], floats: [Float]) { self.init(name: name, shape: shape, values: .floats(floats)) }
    }

    /// The bytes of a safetensors file holding `tensors` in the given order
    /// (float tensors in `dtype`) and `metadata` as `__metadata__`.
    public static func encode(_ tensors: [Tensor], metadata: [String: String] = [:], dtype: SafetensorsDType = .f32) throws -> Data {
        guard [.f32, .f16, .bf16].contains(dtype) else { throw SafetensorsError("cannot write float tensors as \(dtype.rawValue)") }
        var header: [String: Any] = [:]
        var payload = Data()
        for t in tensors {
            let count: Int
            let begin = payload.count
            switch t.values {
            case .floats(let values):
                count = values.count
                for v in values {
                    switch dtype {
                    case .bf16: withUnsafeBytes(of: UInt16(truncatingIfNeeded: v.bitPattern >> 16).littleEndian) { payload.append(contentsOf: $0) }
                    case .f16: withUnsafeBytes(of: floatToHalf(v).littleEndian) { payload.append(contentsOf: $0) }
                    default: withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
                    }
                }
                header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [begin, payload.count]]
            case .int64(let values):
                count = values.count
                for v in values { withUnsafeBytes(of: v.littleEndian) { payload.append(contentsOf: $0) } }
                header[t.name] = ["dtype": SafetensorsDType.i64.rawValue, "shape": t.shape, "data_offsets": [begin, payload.count]]
            }
            guard count == t.shape.reduce(1, *) else {
                throw SafetensorsError("\(t.name): \(count) values for shape \(t.shape)")
            }
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces, as the reference writer does
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(payload)
        return file
    }

    /// Writes float tensors (values in file layout) in the given dtype. Not
    /// atomic by itself: files others rely on go through a temporary, fsync and
    /// rename (HDF5File.replaceAtomically).
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], to url: URL,
                             dtype: SafetensorsDType = .f32, metadata: [String: String] = [:]) throws {
        let data = try encode(tensors.map { Tensor(name: $0.name, shape: $0.shape, floats: $0.values) },
                              metadata: metadata, dtype: dtype)
        try data.write(to: url)
    }
}

// MARK: - Half precision

func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = Int((h >> 10) & 0x1F)
    let mant = UInt32(h & 0x3FF)
    if exp == 0 {
        // Zero or subnormal: mant * 2^-24.
        let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
}

/// Round-to-nearest-even conversion for writing test files.
func floatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let a = abs(f)
    if a.isNaN { return sign | 0x7E00 }
    if a >= 65520 { return sign | 0x7C00 }
    if a < Float(sign: .plus, exponent: -14, significand: 1) {
        // Subnormal half: round(a / 2^-24).
        return sign | UInt16((a * Float(sign: .plus, exponent: 24, significand: 1)).rounded(.toNearestOrEven))
    }
    let e = Int(a.exponent)  // -14...15
    let m = (a.significand - 1) * 1024
    var mant = UInt16(m.rounded(.toNearestOrEven))
    var exp = UInt16(e + 15)
    if mant == 1024 { mant = 0; exp += 1 }
    return sign | (exp << 10) | mant
}
