import Foundation

// MARK: MATLAB level-5 MAT-files (the CUHK03 protocol configs)

/// A MAT-file that cannot be read.
public struct MatFileError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A MATLAB value, as much of it as the re-ID configs use.
indirect enum MatValue: Sendable {
    /// Any numeric class, converted to Double; column-major, `dims` as MATLAB gives them.
    case numeric(dims: [Int], values: [Double])
    /// Character array (rows joined; a single row is the usual case).
    case text(String)
    /// Cell array, column-major.
    case cell(dims: [Int], values: [MatValue])
    /// Anything else (structs, objects, sparse), by MATLAB class number.
    case unsupported(classID: Int)

    /// Numbers of a numeric array, flattened (MATLAB's `(:)`).
    var numbers: [Double]? { if case .numeric(_, let v) = self { return v } else { return nil } }
    /// Strings of a cell array of character arrays, flattened.
    var strings: [String]? {
        guard case .cell(_, let cells) = self else { return nil }
        var out: [String] = []
        for c in cells {
            switch c {
            case .text(let s): out.append(s)
            case .cell(_, let inner) where inner.count == 1:
                guard case .text(let s) = inner[0] else { return nil }
                out.append(s)
            default: return nil
            }
        }
        return out
    }
}

/// Reads the top-level variables of a level-5 MAT-file (MATLAB `-v6`/`-v7`,
/// scipy `savemat`), including zlib-compressed ones. Little-endian files only.
func readMatFileV5(path: String) throws -> [String: MatValue] {
    guard let data = FileManager.default.contents(atPath: path) else { throw MatFileError("\(path): cannot read the file") }
    let bytes = [UInt8](data)
    guard bytes.count >= 128 else { throw MatFileError("\(path): too short for a MAT-file header") }
    if bytes.starts(with: Array("\u{89}HDF".utf8)) || (bytes.count > 516 && bytes[512..<516].elementsEqual([0x89, 0x48, 0x44, 0x46])) {
        throw MatFileError("\(path): a MATLAB v7.3 (HDF5) file, expected a level-5 MAT-file")
    }
    guard bytes[126] == UInt8(ascii: "I"), bytes[127] == UInt8(ascii: "M") else {
        throw MatFileError("\(path): not a little-endian level-5 MAT-file (no 'IM' marker)")
    }
    var vars: [String: MatValue] = [:]
    var reader = MatReader(bytes: bytes, position: 128, end: bytes.count, path: path)
    while reader.position + 8 <= reader.end {
        let (type, payload) = try reader.element()
        var elementBytes = payload
        var elementType = type
        if type == 15 { // miCOMPRESSED: a whole element inside (inflation is capped)
            let inner = try zlibInflate(Array(payload))
            var r = MatReader(bytes: inner, position: 0, end: inner.count, path: path)
            let (t, p) = try r.element()
            elementType = t; elementBytes = p
        }
        guard elementType == 14 else { continue } // only matrices are variables
        let (name, value) = try MatReader.matrix(Array(elementBytes), path: path)
        vars[name] = value
    }
    return vars
}

private struct MatReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int
    let path: String

    func u32(_ p: Int) -> UInt32 { UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24 }

    /// One data element: its type and its payload (the 8-byte padding skipped).
    mutating func element() throws -> (Int, ArraySlice<UInt8>) {
        guard position + 8 <= end else { throw MatFileError("\(path): truncated element tag at byte \(position)") }
        let tag = u32(position)
        if tag >> 16 != 0 { // small data element: 4 bytes of data in the tag
            let n = Int(tag >> 16), t = Int(tag & 0xFFFF)
            guard n <= 4 else { throw MatFileError("\(path): bad small element at byte \(position)") }
            let p = position + 4
            position += 8
            return (t, bytes[p..<(p + n)])
        }
        let n = Int(u32(position + 4))
        let p = position + 8
        guard p + n <= end else { throw MatFileError("\(path): element at byte \(position) runs past the end (truncated file?)") }
        position = p + (Int(tag) == 15 ? n : (n + 7) & ~7)
        return (Int(tag), bytes[p..<(p + n)])
    }

    /// Decodes a numeric payload of MAT type `type` to Doubles.
    static func numbers(_ type: Int, _ s: ArraySlice<UInt8>, path: String) throws -> [Double] {
        let b = Array(s)
        func le(_ i: Int, _ n: Int) -> UInt64 { (0..<n).reduce(UInt64(0)) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) } }
        let size: Int
        switch type {
        case 1, 2: size = 1
        case 3, 4: size = 2
        case 5, 6, 7: size = 4
        case 9, 12, 13: size = 8
        default: throw MatFileError("\(path): unsupported numeric element type \(type)")
        }
        return (0..<(b.count / size)).map { k in
            let v = le(k * size, size)
            switch type {
            case 1: return Double(Int8(truncatingIfNeeded: v))
            case 2: return Double(UInt8(truncatingIfNeeded: v))
            case 3: return Double(Int16(truncatingIfNeeded: v))
            case 4: return Double(UInt16(truncatingIfNeeded: v))
            case 5: return Double(Int32(truncatingIfNeeded: v))
            case 6: return Double(UInt32(truncatingIfNeeded: v))
            case 7: return Double(Float(bitPattern: UInt32(truncatingIfNeeded: v)))
            case 9: return Double(bitPattern: v)
            case 12: return Double(Int64(bitPattern: v))
            default: return Double(v)
            }
        }
    }

    /// Cells nested inside cells, at most (protocol files nest two deep).
    static let maxDepth = 32

    /// A miMATRIX payload: (name, value). Dims must be whole, finite and small
    /// enough for the bytes that follow; nesting is capped at `maxDepth`.
    static func matrix(_ payload: [UInt8], path: String, depth: Int = 0) throws -> (String, MatValue) {
        if payload.isEmpty { return ("", .numeric(dims: [0, 0], values: [])) } // empty cell entries
        guard depth < maxDepth else { throw MatFileError("\(path): cells nested deeper than \(maxDepth) levels") }
        var r = MatReader(bytes: payload, position: 0, end: payload.count, path: path)
        let (_, flags) = try r.element()
        guard flags.count >= 4 else { throw MatFileError("\(path): bad array flags") }
        let classID = Int(flags[flags.startIndex])
        let (dimType, dimBytes) = try r.element()
        let dims = try numbers(dimType, dimBytes, path: path).map { d -> Int in
            guard let n = Int(exactly: d), n >= 0, n <= payload.count * 8 + 1 else {
                throw MatFileError("\(path): array dimension \(d) is not a plausible size")
            }
            return n
        }
        let (_, nameBytes) = try r.element()
        let name = String(decoding: nameBytes, as: UTF8.self)
        var count = 1
        for d in dims {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw MatFileError("\(path): \(name) has dims \(dims): too many elements") }
            count = p
        }
        switch classID {
        case 1: // cell: every entry takes at least an 8-byte tag
            guard count <= (payload.count - r.position) / 8 else {
                throw MatFileError("\(path): cell \(name) claims \(count) entries in \(payload.count) bytes")
            }
            var cells: [MatValue] = []
            for _ in 0..<count {
                let (t, p) = try r.element()
                guard t == 14 else { throw MatFileError("\(path): cell \(name) holds a non-matrix element") }
                cells.append(try matrix(Array(p), path: path, depth: depth + 1).1)
            }
            return (name, .cell(dims: dims, values: cells))
        case 4: // char: column-major code units
            let (t, p) = try r.element()
            if t == 16 { return (name, .text(String(decoding: p, as: UTF8.self))) }
            let units = try numbers(t, p, path: path)
            // Rows come from the header, the units from the data: no more rows than units.
            let rows = max(dims.first ?? 1, 1)
            guard rows <= max(units.count, 1) else {
                throw MatFileError("\(path): \(name) claims \(rows) text rows for \(units.count) characters")
            }
            let cols = units.count / rows
            var text = ""
            for row in 0..<rows {
                if row > 0 { text += "\n" }
                for c in 0..<cols {
                    text.unicodeScalars.append(UInt32(exactly: units[c * rows + row]).flatMap(Unicode.Scalar.init) ?? "?")
                }
            }
            return (name, .text(text))
        case 6...15: // double, single, int8 ... uint64
            let (t, p) = try r.element()
            let values = try numbers(t, p, path: path)
            guard values.count == count else { throw MatFileError("\(path): \(name) has \(values.count) values for dims \(dims)") }
            return (name, .numeric(dims: dims, values: values))
        default:
            return (name, .unsupported(classID: classID))
        }
    }
}
