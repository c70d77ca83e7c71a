import Foundation

// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
// and the raw little-endian tensor bytes, offsets relative to the end of the header.

public struct SafetensorsError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum SafetensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    var size: Int { self == .f32 ? 4 : 2 }
}

/// A parsed safetensors file (read whole into memory).
public struct SafetensorsFile {
    public struct Entry: Sendable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var byteRange: Range<Int>
    }

    public let path: String
    /// Tensors in file-offset order.
    public let entries: [Entry]
    private let data: Data
    private let dataStart: Int

    public init(contentsOf url: URL) throws {
        path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw SafetensorsError("\(url.path): cannot read (\(error.localizedDescription))")
        }
        self.data = data
        guard data.count >= 8 else { throw SafetensorsError("\(url.path): too short for a safetensors header") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw SafetensorsError("\(url.path): header length \(headerLength) exceeds the file size \(data.count)")
        }
        dataStart = 8 + Int(headerLength)
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) } catch {
            throw SafetensorsError("\(url.path): header is not valid JSON")
        }
        guard let header = json as? [String: Any] else { throw SafetensorsError("\(url.path): header is not a JSON object") }
        var entries: [Entry] = []
        let payload = data.count - dataStart
        for (name, value) in header where name != "__metadata__" {
            guard let d = value as? [String: Any], let dtype = d["dtype"] as? String,
                  let shape = (d["shape"] as? [NSNumber])?.map(\.intValue),
                  let offsets = (d["data_offsets"] as? [NSNumber])?.map(\.intValue), offsets.count == 2 else {
                throw SafetensorsError("\(url.path): tensor \(name) has a malformed header entry")
            }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= payload else {
                throw SafetensorsError("\(url.path): tensor \(name) has data offsets \(offsets) outside the \(payload)-byte payload")
            }
            // The product is overflow-checked: this target is built -Ounchecked, where
            // a wrapped product could match a tiny byte range for an absurd shape.
            var bytes = SafetensorsDType(rawValue: dtype)?.size ?? 1
            for x in shape {
                let (p, overflow) = bytes.multipliedReportingOverflow(by: x)
                guard !overflow else { throw SafetensorsError("\(url.path): tensor \(name) has shape \(shape): its size overflows") }
                bytes = p
            }
            if SafetensorsDType(rawValue: dtype) != nil, offsets[1] - offsets[0] != bytes {
                throw SafetensorsError("\(url.path): tensor \(name) \(dtype) \(shape) needs \(bytes) bytes, has \(offsets[1] - offsets[0])")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1]))
        }
        self.entries = entries.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
    }

    /// A tensor's values as Float (F32, F16 and BF16 are converted).
    public func floats(_ e: Entry) throws -> [Float] {
        guard let dt = SafetensorsDType(rawValue: e.dtype) else {
            throw SafetensorsError("\(path): tensor \(e.name) has unsupported dtype \(e.dtype) (F32, F16, BF16 are read)")
        }
        let n = e.shape.reduce(1, *)
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
            }
        }
        return out
    }

    /// Writes tensors (values given in file layout, as Float) in the given dtype.
    public static func write(_ tensors: [(name: String, shape: [Int], values: [Float])], to url: URL,
                             dtype: SafetensorsDType = .f32) throws {
        var header: [String: Any] = [:]
        var payload = Data()
        for t in tensors {
            precondition(t.values.count == t.shape.reduce(1, *), "\(t.name): \(t.values.count) values for shape \(t.shape)")
            let begin = payload.count
            for v in t.values {
                switch dtype {
                case .f32: withUnsafeBytes(of: v.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
                case .bf16: withUnsafeBytes(of: UInt16(truncatingIfNeeded: v.bitPattern >> 16).littleEndian) { payload.append(contentsOf: $0) }
                case .f16: withUnsafeBytes(of: floatToHalf(v).littleEndian) { payload.append(contentsOf: $0) }
                }
            }
            header[t.name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [begin, payload.count]]
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces, as the reference writer does
        var file = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(json)
        file.append(payload)
        try file.write(to: url, options: .atomic)
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

// MARK: - Loading pretrained weights into a network

/// What `loadPretrained` did, by tensor name (names as in the network).
public struct PretrainedLoadReport: Sendable, CustomStringConvertible {
    /// Network tensors (parameters and buffers) set from the file.
    public var loaded: [String] = []
    /// Network tensors the file did not provide (kept as they were).
    public var missing: [String] = []
    /// File tensors that match nothing in the network.
    public var unexpected: [String] = []
    /// File tensors skipped on purpose (`fc.*`, `num_batches_tracked`).
    public var ignored: [String] = []

    public var description: String {
        "loaded \(loaded.count), missing \(missing.count), unexpected \(unexpected.count), ignored \(ignored.count)"
    }
}

extension MancsNetwork {
    /// Loads weights by name from a safetensors file: Mancs names, or
    /// torchvision/timm backbone names with or without a `backbone.` prefix.
    /// BN running statistics go to `buffers`; `fc.*` and `num_batches_tracked`
    /// are ignored. Throws on a malformed file or a shape mismatch (naming the
    /// tensor and both shapes), before changing anything.
    @discardableResult
    public func loadPretrained(safetensors url: URL) throws -> PretrainedLoadReport {
        let file = try SafetensorsFile(contentsOf: url)
        var report = PretrainedLoadReport()
        var plan: [(store: ParameterStore, info: TensorInfo, entry: SafetensorsFile.Entry)] = []
        var seen = Set<String>()
        for e in file.entries {
            let name = e.name
            if name.hasSuffix("num_batches_tracked") || name.hasPrefix("fc.") || name.hasPrefix("backbone.fc.") {
                report.ignored.append(name)
                continue
            }
            let candidates = name.hasPrefix("backbone.") ? [name] : [name, "backbone." + name]
            guard let (store, info) = candidates.lazy.compactMap({ n -> (ParameterStore, TensorInfo)? in
                if let i = self.parameters.info(n) { return (self.parameters, i) }
                if let i = self.buffers.info(n) { return (self.buffers, i) }
                return nil
            }).first else {
                report.unexpected.append(name)
                continue
            }
            guard e.shape == info.shape else {
                throw SafetensorsError("\(url.path): tensor \(name) has shape \(e.shape), the network's \(info.name) has \(info.shape)")
            }
            guard !seen.contains(info.name) else {
                throw SafetensorsError("\(url.path): tensor \(name) maps onto \(info.name), which another tensor already set")
            }
            seen.insert(info.name)
            plan.append((store, info, e))
        }
        // Convert everything first so a bad dtype leaves the network untouched.
        let values = try plan.map { try file.floats($0.entry) }
        for (p, v) in zip(plan, values) { p.store.load(p.info, from: v) }
        report.loaded = (parameters.tensors + buffers.tensors).map(\.name).filter { seen.contains($0) }
        report.missing = (parameters.tensors + buffers.tensors).map(\.name).filter { !seen.contains($0) }
        return report
    }
}
