import CHDF5
import Foundation

// Variable-length strings are read without libhdf5's variable-length path.
//
// A variable-length string is stored as a descriptor (length, address of a
// "global heap" collection, index of the object in it) plus the bytes in that
// collection. libhdf5 1.10.8 trusts the object's size in the collection: one
// claiming 4 GiB makes `H5HG_read` copy past its buffers (a segmentation fault;
// Tests/fuzz/regressions/hdf5/h5hg-read-vlen-attribute-segfault.h5), and a
// free-space entry of size 0 makes its parser loop forever. So HDF5Kit reads
// the descriptors raw (a conversion to an opaque type that copies the stored
// bytes) and the collection itself, bounds-checked, from the file.

/// A variable-length string type in the file converted to an opaque type of
/// the same size: the stored descriptor, byte for byte. Registered once.
private let rawDescriptorConversion: Void = {
    let conv: H5T_conv_t = { src, dst, cdata, _, _, _, _, _, _ in
        guard let cdata else { return -1 }
        if cdata.pointee.command == H5T_CONV_INIT {
            // Only variable-length strings to an opaque type of the stored size.
            guard H5Tget_class(src) == H5T_STRING, H5Tis_variable_str(src) > 0, H5Tget_class(dst) == H5T_OPAQUE,
                  H5Tget_size(dst) == H5Tget_size(src) else { return -1 }
            cdata.pointee.need_bkg = H5T_BKG_NO
        }
        return 0  // converting: the bytes are already what is wanted
    }
    let vlen = H5Tcopy(mancs_h5t_c_s1())
    H5Tset_size(vlen, mancs_h5t_variable())
    let opaque = H5Tcreate(H5T_OPAQUE, 16)
    H5Tregister(H5T_PERS_SOFT, "mancs raw variable-length string descriptor", vlen, opaque, conv)
    H5Tclose(vlen); H5Tclose(opaque)
}()

extension HDF5File {
    /// Sizes of addresses and lengths in this file (2 to 16 bytes each).
    private func offsetSizes() throws -> (address: Int, length: Int, base: Int) {
        let fcpl = H5Fget_create_plist(id)
        guard fcpl >= 0 else { throw HDF5Error("\(path): cannot read the file's creation properties") }
        defer { H5Pclose(fcpl) }
        var a = 0, l = 0
        var userblock: hsize_t = 0
        guard H5Pget_sizes(fcpl, &a, &l) >= 0, H5Pget_userblock(fcpl, &userblock) >= 0,
              (2...16).contains(a), (2...16).contains(l), let base = Int(exactly: userblock) else {
            throw HDF5Error("\(path): damaged superblock (address sizes)")
        }
        return (a, l, base)
    }

    /// Reads `count` variable-length strings of `what` (the lock held):
    /// `readRaw(type, buffer)` fills the buffer with the stored descriptors
    /// (H5Aread or H5Dread with the opaque memory type given).
    func readVariableStrings(count: Int, what: String, _ readRaw: (hid_t, UnsafeMutableRawPointer) -> herr_t) throws -> [String] {
        _ = rawDescriptorConversion
        // What libhdf5 still caches must be on disk before the file is read directly.
        if writable, H5Fflush(id, H5F_SCOPE_LOCAL) < 0 { throw HDF5Error("\(path): flush failed\(systemReason())") }
        let sizes = try offsetSizes()
        let descriptor = 4 + sizes.address + 4
        let (bytes, overflow) = count.multipliedReportingOverflow(by: descriptor)
        guard !overflow, bytes <= HDF5Limits.maxReadBytes else {
            throw HDF5Error("\(path): \(what) claims \(count) strings: more than this reader allocates")
        }
        let type = H5Tcreate(H5T_OPAQUE, descriptor)
        guard type >= 0 else { throw HDF5Error("\(path): cannot read \(what)") }
        defer { H5Tclose(type) }
        var raw = [UInt8](repeating: 0, count: max(bytes, 1))
        guard raw.withUnsafeMutableBytes({ readRaw(type, $0.baseAddress!) }) >= 0 else {
            throw HDF5Error("\(path): cannot read \(what) (damaged data?)")
        }
        var heap = GlobalHeapReader(file: self, sizes: sizes, what: what)
        var strings: [String] = []
        strings.reserveCapacity(count)
        for i in 0..<count {
            let at = i * descriptor
            let length = Int(littleEndian: raw, at: at, bytes: 4)!
            if length == 0 { strings.append(""); continue }
            guard let address = Int(littleEndian: raw, at: at + 4, bytes: sizes.address),
                  let index = Int(littleEndian: raw, at: at + 4 + sizes.address, bytes: 4) else {
                throw HDF5Error("\(path): \(what): string \(i) has an address beyond any file: damaged")
            }
            let data = try heap.object(collection: address, index: index, length: length, string: i)
            strings.append(String(decoding: data.prefix { $0 != 0 }, as: UTF8.self))
        }
        return strings
    }
}

/// Reads objects of global heap collections straight from the file, checking
/// every size against the collection and the collection against the file.
struct GlobalHeapReader {
    let file: HDF5File
    let sizes: (address: Int, length: Int, base: Int)
    let what: String
    private var collections: [Int: (bytes: [UInt8], objects: [Int: Range<Int>])] = [:]
    private var total = 0

    init(file: HDF5File, sizes: (address: Int, length: Int, base: Int), what: String) {
        self.file = file; self.sizes = sizes; self.what = what
    }

    private func damaged(_ why: String) -> HDF5Error {
        HDF5Error("\(file.path): \(what): \(why) (damaged or crafted file): refused")
    }

    /// The bytes of object `index` of the collection at `address`, of which a
    /// string of `length` bytes is read.
    mutating func object(collection address: Int, index: Int, length: Int, string: Int) throws -> ArraySlice<UInt8> {
        if collections[address] == nil { collections[address] = try load(address) }
        guard index > 0, let range = collections[address]!.objects[index] else {
            throw damaged("string \(string) names object \(index) of the heap collection at \(address), which has none such")
        }
        guard length <= range.count else {
            throw damaged("string \(string) claims \(length) bytes of a heap object of \(range.count)")
        }
        total += length
        guard total <= HDF5Limits.maxReadBytes else { throw damaged("strings of more than \(HDF5Limits.maxReadBytes) bytes") }
        return collections[address]!.bytes[range.lowerBound..<(range.lowerBound + length)]
    }

    /// Reads and parses one collection: "GCOL", version 1, its size, then
    /// objects (index, references, reserved, size, data padded to 8 bytes);
    /// index 0 is the free space, whose size covers its own header.
    private func load(_ address: Int) throws -> (bytes: [UInt8], objects: [Int: Range<Int>]) {
        let header = (8 + sizes.length + 7) / 8 * 8, objectHeader = 8 + sizes.length
        var fd: UnsafeMutableRawPointer? = nil
        let fapl = H5Fget_access_plist(file.id)
        defer { if fapl >= 0 { H5Pclose(fapl) } }
        guard fapl >= 0, H5Pget_driver(fapl) == mancs_h5fd_sec2(), H5Fget_vfd_handle(file.id, fapl, &fd) >= 0, let fd else {
            throw HDF5Error("\(file.path): \(what): cannot read the file directly")
        }
        let descriptor = fd.load(as: Int32.self)
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { throw HDF5Error("\(file.path): cannot stat\(systemReason())") }
        let fileSize = Int(st.st_size)
        let (start, overflow) = sizes.base.addingReportingOverflow(address)
        guard !overflow, start >= 0, start <= fileSize - header else {
            throw damaged("a heap collection at \(address) lies outside the file of \(fileSize) bytes")
        }
        func read(_ count: Int, at offset: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: count)
            let got = out.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, count, off_t(offset)) }
            guard got == count else { throw HDF5Error("\(file.path): \(what): cannot read \(count) bytes at \(offset)\(systemReason())") }
            return out
        }
        let head = try read(header, at: start)
        guard head[0..<4].elementsEqual("GCOL".utf8), head[4] == 1 else {
            throw damaged("no heap collection at \(address)")
        }
        guard let size = Int(littleEndian: head, at: 8, bytes: sizes.length), size >= header, size <= fileSize - start,
              size <= HDF5Limits.maxReadBytes else {
            throw damaged("the heap collection at \(address) claims more bytes than the file holds")
        }
        let bytes = try read(size, at: start)
        var objects: [Int: Range<Int>] = [:]
        var p = header
        while p + objectHeader <= size {  // a shorter tail is free space
            let index = Int(littleEndian: bytes, at: p, bytes: 2)!
            guard let length = Int(littleEndian: bytes, at: p + 8, bytes: sizes.length), length <= size - p - (index > 0 ? objectHeader : 0) else {
                throw damaged("object \(Int(littleEndian: bytes, at: p, bytes: 2)!) of the heap collection at \(address) runs past its end")
            }
            if index == 0 {
                guard length > 0 else { throw damaged("an empty free-space entry in the heap collection at \(address)") }
                p += length
            } else {
                objects[index] = (p + objectHeader)..<(p + objectHeader + length)
                p += objectHeader + (length + 7) / 8 * 8
            }
        }
        return (bytes, objects)
    }
}

extension Int {
    /// The unsigned little-endian integer of `bytes` bytes at `offset`, or nil
    /// when it does not fit an Int.
    init?(littleEndian buffer: [UInt8], at offset: Int, bytes: Int) {
        var v: UInt64 = 0
        for k in stride(from: bytes - 1, through: 0, by: -1) {
            guard v >> 56 == 0 else { return nil }
            v = v << 8 | UInt64(buffer[offset + k])
        }
        guard let x = Int(exactly: v) else { return nil }
        self = x
    }
}
