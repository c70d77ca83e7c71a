// MARK: zlib inflate (RFC 1950/1951)

/// Decompresses a zlib stream (MATLAB's `miCOMPRESSED` elements). A small,
/// plain implementation of RFC 1951 (stored, fixed and dynamic Huffman
/// blocks); the Adler-32 trailer is checked.
func zlibInflate(_ input: [UInt8]) throws -> [UInt8] {
    guard input.count >= 6, input[0] & 0x0F == 8, (UInt16(input[0]) << 8 | UInt16(input[1])) % 31 == 0 else {
        throw MatFileError("compressed element: not a zlib stream")
    }
    guard input[1] & 0x20 == 0 else { throw MatFileError("compressed element: zlib preset dictionaries are not supported") }
    var inflater = Inflater(input, start: 2)
    let out = try inflater.run()
    let end = (inflater.bitPosition + 7) / 8
    guard end + 4 <= input.count else { throw MatFileError("compressed element: truncated zlib stream") }
    var a: UInt32 = 1, b: UInt32 = 0
    for byte in out { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
    let stored = UInt32(input[end]) << 24 | UInt32(input[end + 1]) << 16 | UInt32(input[end + 2]) << 8 | UInt32(input[end + 3])
    guard stored == (b << 16 | a) else { throw MatFileError("compressed element: Adler-32 checksum mismatch") }
    return out
}

private struct Huffman {
    var counts = [Int](repeating: 0, count: 16)
    var symbols: [Int] = []

    init(lengths: [Int]) throws {
        for l in lengths { counts[l] += 1 }
        counts[0] = 0
        var offsets = [Int](repeating: 0, count: 16)
        for i in 1..<16 { offsets[i] = offsets[i - 1] + counts[i - 1] }
        symbols = [Int](repeating: 0, count: lengths.count)
        for (s, l) in lengths.enumerated() where l > 0 { symbols[offsets[l]] = s; offsets[l] += 1 }
    }
}

private struct Inflater {
    let input: [UInt8]
    var bitPosition: Int
    var out: [UInt8] = []

    init(_ input: [UInt8], start: Int) { self.input = input; bitPosition = start * 8 }

    mutating func bits(_ n: Int) throws -> Int {
        var v = 0
        for i in 0..<n {
            let byte = bitPosition >> 3
            guard byte < input.count else { throw MatFileError("compressed element: truncated deflate data") }
            v |= Int((input[byte] >> UInt8(bitPosition & 7)) & 1) << i
            bitPosition += 1
        }
        return v
    }

    mutating func decode(_ h: Huffman) throws -> Int {
        var code = 0, first = 0, index = 0
        for len in 1..<16 {
            code |= try bits(1)
            let count = h.counts[len]
            if code - count < first { return h.symbols[index + (code - first)] }
            index += count; first += count
            first <<= 1; code <<= 1
        }
        throw MatFileError("compressed element: invalid Huffman code")
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    mutating func run() throws -> [UInt8] {
        var last = 0
        repeat {
            last = try bits(1)
            switch try bits(2) {
            case 0: try stored()
            case 1:
                var l = [Int](repeating: 8, count: 288)
                for i in 144..<256 { l[i] = 9 }
                for i in 256..<280 { l[i] = 7 }
                try codes(Huffman(lengths: l), Huffman(lengths: [Int](repeating: 5, count: 30)))
            case 2: try dynamic()
            default: throw MatFileError("compressed element: invalid deflate block type")
            }
        } while last == 0
        return out
    }

    mutating func stored() throws {
        bitPosition = (bitPosition + 7) & ~7
        let p = bitPosition >> 3
        guard p + 4 <= input.count else { throw MatFileError("compressed element: truncated stored block") }
        let len = Int(input[p]) | Int(input[p + 1]) << 8
        guard p + 4 + len <= input.count else { throw MatFileError("compressed element: truncated stored block") }
        out.append(contentsOf: input[(p + 4)..<(p + 4 + len)])
        bitPosition = (p + 4 + len) * 8
    }

    mutating func dynamic() throws {
        let nlen = try bits(5) + 257, ndist = try bits(5) + 1, ncode = try bits(4) + 4
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var cl = [Int](repeating: 0, count: 19)
        for i in 0..<ncode { cl[order[i]] = try bits(3) }
        let lencode = try Huffman(lengths: cl)
        var lengths: [Int] = []
        while lengths.count < nlen + ndist {
            let sym = try decode(lencode)
            switch sym {
            case 0..<16: lengths.append(sym)
            case 16:
                guard let prev = lengths.last else { throw MatFileError("compressed element: repeat with no previous length") }
                lengths += [Int](repeating: prev, count: 3 + (try bits(2)))
            case 17: lengths += [Int](repeating: 0, count: 3 + (try bits(3)))
            default: lengths += [Int](repeating: 0, count: 11 + (try bits(7)))
            }
        }
        guard lengths.count == nlen + ndist else { throw MatFileError("compressed element: too many code lengths") }
        try codes(Huffman(lengths: Array(lengths[0..<nlen])), Huffman(lengths: Array(lengths[nlen...])))
    }

    mutating func codes(_ lit: Huffman, _ dist: Huffman) throws {
        while true {
            let sym = try decode(lit)
            if sym < 256 { out.append(UInt8(sym)); continue }
            if sym == 256 { return }
            let li = sym - 257
            guard li < 29 else { throw MatFileError("compressed element: invalid length symbol") }
            let len = Self.lengthBase[li] + (try bits(Self.lengthExtra[li]))
            let di = try decode(dist)
            guard di < 30 else { throw MatFileError("compressed element: invalid distance symbol") }
            let d = Self.distBase[di] + (try bits(Self.distExtra[di]))
            guard d <= out.count else { throw MatFileError("compressed element: distance beyond the output") }
            let from = out.count - d
            for k in 0..<len { out.append(out[from + k]) }
        }
    }
}
