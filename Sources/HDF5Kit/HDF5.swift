import CHDF5
import Foundation

/// A failed HDF5 operation, naming the file and the object involved.
public struct HDF5Error: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Element types the wrapper reads and writes.
public enum HDF5Scalar {
    case float32, float64, int64, int32, uint8, uint16
    var nativeType: hid_t {
        switch self {
        case .float32: return mancs_h5t_native_float()
        case .float64: return mancs_h5t_native_double()
        case .int64: return mancs_h5t_native_int64()
        case .int32: return mancs_h5t_native_int32()
        case .uint8: return mancs_h5t_native_uint8()
        case .uint16: return mancs_h5t_native_uint16()
        }
    }
}

/// Caps on what a file may make the reader allocate: a damaged or crafted
/// header must get an error, not a request for terabytes.
public enum HDF5Limits {
    /// Bytes one read may allocate (8 GiB: a features file of a million images
    /// of 2,048 floats).
    public static let maxReadBytes = 1 << 33
    /// Elements of one numeric attribute (Mancs writes a handful).
    public static let maxAttributeElements = 1 << 20
    /// Strings in one string dataset, and bytes of one fixed-length string.
    public static let maxStrings = 1 << 24
    public static let maxStringBytes = 1 << 20
    /// Groups nested inside one another.
    public static let maxDepth = 64
    /// Links in one group (a checkpoint has a few hundred).
    public static let maxLinks = 1 << 20
    /// The worst expansion of a compression filter (deflate's is about 1032:1).
    static let maxCompressionRatio = 1100
}

public protocol HDF5Element { static var hdf5Type: HDF5Scalar { get } }
extension Float: HDF5Element { public static var hdf5Type: HDF5Scalar { .float32 } }
extension Double: HDF5Element { public static var hdf5Type: HDF5Scalar { .float64 } }
extension Int64: HDF5Element { public static var hdf5Type: HDF5Scalar { .int64 } }
extension Int32: HDF5Element { public static var hdf5Type: HDF5Scalar { .int32 } }
extension UInt8: HDF5Element { public static var hdf5Type: HDF5Scalar { .uint8 } }
extension UInt16: HDF5Element { public static var hdf5Type: HDF5Scalar { .uint16 } }

/// HDF5 keeps global state; every call goes through this lock so the wrapper is
/// safe to use from several threads (the Debian build is not thread-safe).
let hdf5Lock = NSRecursiveLock()
private let silenced: Void = { H5open(); mancs_h5_silence_errors() }()

@inline(__always) func locked<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock(); defer { hdf5Lock.unlock() }
    _ = silenced
    // The error-printing switch is per thread in some HDF5 builds: set it on
    // whichever thread calls (cheap).
    mancs_h5_silence_errors()
    return try body()
}

/// The operating system's reason for a failed HDF5 call (HDF5's file driver
/// leaves errno set, e.g. "No space left on device"), or "" when none is known.
func systemReason() -> String { errno == 0 ? "" : " (\(String(cString: strerror(errno))))" }

/// Runs `body` holding the lock every HDF5Kit call takes, for code that calls
/// the C library directly (e.g. reading object references) alongside HDF5Kit.
public func withHDF5Lock<T>(_ body: () throws -> T) rethrows -> T { try locked(body) }

/// An open HDF5 file. Closed when released (or by `close()`).
public final class HDF5File: @unchecked Sendable {
    public let path: String
    let id: hid_t
    private var closed = false
    /// The file's size when opened: no dataset may claim more storage.
    let fileBytes: Int
    /// Opened for writing: libhdf5 may hold data not yet in the file.
    let writable: Bool

    /// Opens an existing file read-only (or read-write).
    public init(openForReading path: String, writable: Bool = false) throws {
        self.path = path
        try FileProbe.requireRegularFile(path)  // "no such file"; a FIFO would block libhdf5's open
        let fid = locked { H5Fopen(path, writable ? mancs_h5f_acc_rdwr() : mancs_h5f_acc_rdonly(), mancs_h5p_default()) }
        guard fid >= 0 else { throw HDF5Error("\(path): not a readable HDF5 file (truncated or damaged?)") }
        id = fid
        self.writable = writable
        fileBytes = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? Int.max
    }

    /// Creates (truncating) a file.
    public init(creating path: String) throws {
        self.path = path
        let fid = locked { H5Fcreate(path, mancs_h5f_acc_trunc(), mancs_h5p_default(), mancs_h5p_default()) }
        guard fid >= 0 else { throw HDF5Error("\(path): cannot create HDF5 file") }
        id = fid
        writable = true
        fileBytes = Int.max
    }

    deinit { close() }

    public func close() {
        locked {
            if !closed { H5Fclose(id); closed = true }
        }
    }

    /// Flushes HDF5's buffers to the operating system.
    public func flush() throws {
        errno = 0
        let r = locked { H5Fflush(id, H5F_SCOPE_GLOBAL) }
        if r < 0 { throw HDF5Error("\(path): flush failed\(systemReason())") }
    }

    public var root: HDF5Group { HDF5Group(file: self, path: "/") }
}

/// A group inside a file, addressed by its absolute path.
public struct HDF5Group: Sendable {
    public let file: HDF5File
    public let path: String

    func child(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// Whether a link of that (relative or absolute) path exists.
    public func exists(_ name: String) -> Bool {
        let full = name.hasPrefix("/") ? name : child(name)
        return locked {
            // Check each prefix: H5Lexists fails on a missing intermediate group.
            var acc = ""
            for part in full.split(separator: "/") {
                acc += "/" + part
                if H5Lexists(file.id, acc, mancs_h5p_default()) <= 0 { return false }
                // Not followed (see resolve): opening it gives the clear error.
                if linkType(acc) != H5L_TYPE_HARD { return true }
            }
            return true
        }
    }

    /// The type of the link at an absolute path (the lock held).
    private func linkType(_ full: String) -> H5L_type_t {
        var info = H5L_info_t()
        guard H5Lget_info(file.id, full, &info, mancs_h5p_default()) >= 0 else { return H5L_TYPE_ERROR }
        return info.type
    }

    /// The absolute path of `name`, after checking that every link on the way
    /// is a hard link inside this file. Soft links and external links (which
    /// open another file) are refused: Mancs writes neither, and a file passed
    /// around must not make the reader look elsewhere.
    func resolve(_ name: String) throws -> String {
        let full = name.hasPrefix("/") ? name : child(name)
        try locked {
            var acc = ""
            for part in full.split(separator: "/") {
                acc += "/" + part
                guard H5Lexists(file.id, acc, mancs_h5p_default()) > 0 else { return }  // missing: the open names it
                switch linkType(acc) {
                case H5L_TYPE_HARD: continue
                case H5L_TYPE_SOFT: throw HDF5Error("\(file.path): \(acc) is a soft link: refused (links are not followed)")
                case H5L_TYPE_EXTERNAL:
                    throw HDF5Error("\(file.path): \(acc) is an external link (to another file): refused (links are not followed)")
                default: throw HDF5Error("\(file.path): \(acc) is a link of an unknown kind: refused")
                }
            }
        }
        return full
    }

    /// Calls `visit(group, name)` for every dataset under this group, depth
    /// first in name order. A group reached a second time is refused (a hard
    /// link back to an ancestor, h5py's `f["model/loop"] = f["/"]`, would be
    /// walked forever), as are soft and external links and nesting deeper
    /// than `HDF5Limits.maxDepth`.
    public func walkDatasets(_ visit: (HDF5Group, String) throws -> Void) throws {
        var seen: Set<haddr_t> = [try objectInfo(path).addr]
        try walk(depth: 0, seen: &seen, visit)
    }

    private func walk(depth: Int, seen: inout Set<haddr_t>, _ visit: (HDF5Group, String) throws -> Void) throws {
        guard depth < HDF5Limits.maxDepth else {
            throw HDF5Error("\(file.path): groups nested deeper than \(HDF5Limits.maxDepth) levels at \(path): refused")
        }
        for name in try members() {
            let full = try resolve(name)
            let info = try objectInfo(full)
            if info.type == H5O_TYPE_GROUP {
                guard seen.insert(info.addr).inserted else {
                    throw HDF5Error("\(file.path): \(full) is a hard link to a group already reached "
                                    + "(a link cycle or alias): refused")
                }
                try HDF5Group(file: file, path: full).walk(depth: depth + 1, seen: &seen, visit)
            } else if info.type == H5O_TYPE_DATASET {
                try visit(self, name)
            }
        }
    }

    private func objectInfo(_ full: String) throws -> H5O_info_t {
        try locked {
            var info = H5O_info_t()
            guard H5Oget_info_by_name2(file.id, full, &info, UInt32(H5O_INFO_BASIC), mancs_h5p_default()) >= 0 else {
                throw HDF5Error("\(file.path): cannot open \(full)")
            }
            return info
        }
    }

    public func group(_ name: String) throws -> HDF5Group {
        let full = try resolve(name)
        guard exists(full) else { throw HDF5Error("\(file.path): missing group \(full)") }
        return HDF5Group(file: file, path: full)
    }

    /// Creates the group (and missing parents) if needed.
    @discardableResult
    public func createGroup(_ name: String) throws -> HDF5Group {
        let full = name.hasPrefix("/") ? name : child(name)
        if exists(full) { return HDF5Group(file: file, path: full) }
        try locked {
            let lcpl = H5Pcreate(mancs_h5p_link_create())
            defer { H5Pclose(lcpl) }
            H5Pset_create_intermediate_group(lcpl, 1)
            let g = H5Gcreate2(file.id, full, lcpl, mancs_h5p_default(), mancs_h5p_default())
            guard g >= 0 else { throw HDF5Error("\(file.path): cannot create group \(full)") }
            H5Gclose(g)
        }
        return HDF5Group(file: file, path: full)
    }

    /// Names of the links directly in this group, sorted. Listed with
    /// H5Literate: H5Gget_info on a damaged symbol table crashes libhdf5 1.10.8
    /// (Tests/fuzz/regressions/hdf5/h5g-stab-count-null-memcpy.h5) where the
    /// iteration reports an error.
    public func members() throws -> [String] {
        final class Names { var list: [String] = [] }
        let names = Names()
        try locked {
            let g = H5Gopen2(file.id, path, mancs_h5p_default())
            guard g >= 0 else { throw HDF5Error("\(file.path): cannot open group \(path)") }
            defer { H5Gclose(g) }
            var index: hsize_t = 0
            let r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &index, { _, name, _, op in
                let names = Unmanaged<Names>.fromOpaque(op!).takeUnretainedValue()
                guard let name, names.list.count < HDF5Limits.maxLinks else { return -1 }
                names.list.append(String(cString: name))
                return 0
            }, Unmanaged.passUnretained(names).toOpaque())
            guard r >= 0 else {
                throw HDF5Error("\(file.path): cannot list group \(path) (damaged, or more than \(HDF5Limits.maxLinks) links)")
            }
        }
        return names.list.sorted()
    }

    /// Whether the named member is a group (false for datasets).
    public func isGroup(_ name: String) -> Bool {
        let full = name.hasPrefix("/") ? name : child(name)
        return locked {
            var info = H5O_info_t()
            guard H5Oget_info_by_name2(file.id, full, &info, UInt32(H5O_INFO_BASIC), mancs_h5p_default()) >= 0 else { return false }
            return info.type == H5O_TYPE_GROUP
        }
    }

    // MARK: Datasets

    /// Shape of a dataset ([] for a scalar).
    public func shape(_ name: String) throws -> [Int] {
        let full = try resolve(name)
        return try locked {
            let d = try openDataset(full)
            defer { H5Dclose(d) }
            return try shape(of: d, full)
        }
    }

    /// Opens a dataset whose data lives in this file (the lock held): external
    /// raw files and virtual datasets (data drawn from other files) are refused.
    func openDataset(_ full: String) throws -> hid_t {
        let d = H5Dopen2(file.id, full, mancs_h5p_default())
        guard d >= 0 else { throw HDF5Error("\(file.path): missing dataset \(full)") }
        return try checkedStorage(d, full)
    }

    /// `d` if its data lives in this file; else closes it and throws.
    func checkedStorage(_ d: hid_t, _ full: String) throws -> hid_t {
        let dcpl = H5Dget_create_plist(d)
        defer { H5Pclose(dcpl) }
        if H5Pget_external_count(dcpl) != 0 {
            H5Dclose(d)
            throw HDF5Error("\(file.path): \(full) keeps its data in external files: refused")
        }
        if H5Pget_layout(dcpl) == H5D_VIRTUAL {
            H5Dclose(d)
            throw HDF5Error("\(file.path): \(full) is a virtual dataset (data from other files): refused")
        }
        return d
    }

    func shape(of d: hid_t, _ full: String) throws -> [Int] {
        let sp = H5Dget_space(d)
        guard sp >= 0 else { throw HDF5Error("\(file.path): \(full) has no readable dataspace") }
        defer { H5Sclose(sp) }
        let rank = Int(H5Sget_simple_extent_ndims(sp))
        guard rank >= 0 else { throw HDF5Error("\(file.path): \(full) has a damaged dataspace") }
        var dims = [hsize_t](repeating: 0, count: max(rank, 1)), maxDims = dims
        H5Sget_simple_extent_dims(sp, &dims, &maxDims)
        if rank == 0 { return [] }
        // A dataspace larger than its own maximum is damaged (libhdf5 1.10.8
        // then converts past its buffers: Tests/fuzz/regressions/hdf5/h5d-dims-beyond-maxdims.h5).
        for (x, m) in zip(dims, maxDims) where m != mancs_h5s_unlimited() && x > m {
            throw HDF5Error("\(file.path): \(full) has dims \(dims) beyond its maximum \(maxDims): damaged dataspace")
        }
        return try dims.map {
            guard let x = Int(exactly: $0) else { throw HDF5Error("\(file.path): \(full) has a dimension of \($0): refused") }
            return x
        }
    }

    /// The element count of `shape`, checked before anything is allocated: the
    /// bytes to read (`elementSize` each in memory) stay under
    /// `HDF5Limits.maxReadBytes`, and the dataset's storage in the file (no more
    /// than the file's size) can hold what the dims claim.
    func checkedCount(_ d: hid_t, _ full: String, _ shape: [Int], elementSize: Int, readCount: Int? = nil) throws -> Int {
        var n = 1
        for x in shape {
            let (p, overflow) = n.multipliedReportingOverflow(by: x)
            guard !overflow else { throw HDF5Error("\(file.path): \(full) has dims \(shape): their product overflows") }
            n = p
        }
        let toRead = readCount ?? n
        let (bytes, overflow) = toRead.multipliedReportingOverflow(by: elementSize)
        guard !overflow, bytes <= HDF5Limits.maxReadBytes else {
            throw HDF5Error("\(file.path): \(full) has dims \(shape): reading \(toRead) elements is more than "
                            + "this reader allocates (\(HDF5Limits.maxReadBytes) bytes; damaged or crafted header?)")
        }
        guard n > 0 else { return n }
        let ft = H5Dget_type(d)
        defer { H5Tclose(ft) }
        let typeSize = H5Tget_size(ft)
        let (logical, over2) = n.multipliedReportingOverflow(by: typeSize)
        let storage = Int(clamping: H5Dget_storage_size(d))
        guard storage > 0 else { throw HDF5Error("\(file.path): \(full) has dims \(shape) but holds no data") }
        guard storage <= file.fileBytes else {
            throw HDF5Error("\(file.path): \(full) claims \(storage) bytes of storage in a file of \(file.fileBytes)")
        }
        let ratio = try compresses(d) ? HDF5Limits.maxCompressionRatio : 1
        guard !over2, logical <= storage * ratio else {
            throw HDF5Error("\(file.path): \(full) has dims \(shape) (\(n) elements) but stores only \(storage) bytes: damaged header?")
        }
        return n
    }

    /// Closes `t` after checking it is an integer or floating-point type whose
    /// bit fields lie within its bytes: libhdf5 1.10.8's conversions
    /// (`H5T__bit_copy`) trust them.
    func checkNumericType(_ t: hid_t, _ what: String) throws {
        guard t >= 0 else { throw HDF5Error("\(file.path): \(what) has no readable type") }
        defer { H5Tclose(t) }
        let cls = H5Tget_class(t)
        guard cls == H5T_INTEGER || cls == H5T_FLOAT else { throw HDF5Error("\(file.path): \(what) is not numeric") }
        let bits = H5Tget_size(t) * 8, precision = H5Tget_precision(t), offset = H5Tget_offset(t)
        var ok = (8...128).contains(bits) && precision > 0 && offset >= 0 && Int(offset) + precision <= bits
        if ok && cls == H5T_FLOAT {
            var spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0
            ok = H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) >= 0 && esize > 0 && msize > 0
                && spos < bits && epos + esize <= bits && mpos + msize <= bits && esize <= 64 && msize <= 128
        }
        guard ok else { throw HDF5Error("\(file.path): \(what) has a damaged number type (\(bits / 8) bytes, precision \(precision), offset \(offset))") }
    }

    /// Whether a filter of the dataset can shrink its data (Fletcher32 and
    /// shuffle cannot).
    private func compresses(_ d: hid_t) throws -> Bool {
        let dcpl = H5Dget_create_plist(d)
        defer { H5Pclose(dcpl) }
        for i in 0..<max(0, H5Pget_nfilters(dcpl)) {
            var flags: UInt32 = 0, nelmts = 0, config: UInt32 = 0
            let id = H5Pget_filter2(dcpl, UInt32(i), &flags, &nelmts, nil, 0, nil, &config)
            if id != H5Z_FILTER_FLETCHER32 && id != H5Z_FILTER_SHUFFLE { return true }
        }
        return false
    }

    /// Reads a whole dataset, converting to T; returns values and shape.
    public func read<T: HDF5Element>(_ name: String, as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        let full = try resolve(name)
        return try locked {
            let d = try openDataset(full)
            defer { H5Dclose(d) }
            return try read(d, full, as: T.self)
        }
    }

    /// Reads the whole open dataset `d` (the lock held), sizes checked first.
    func read<T: HDF5Element>(_ d: hid_t, _ full: String, as: T.Type) throws -> (values: [T], shape: [Int]) {
        let shape = try shape(of: d, full)
        let n = try checkedCount(d, full, shape, elementSize: MemoryLayout<T>.stride)
        try checkNumericType(H5Dget_type(d), full)
        var out = [T](repeating: T.zeroValue, count: n)
        let r = out.withUnsafeMutableBytes { H5Dread(d, T.hdf5Type.nativeType, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
        guard r >= 0 else { throw HDF5Error("\(file.path): cannot read \(full) (damaged data or checksum mismatch)") }
        return (out, shape)
    }

    /// Reads a contiguous slab of rows [start, start+count) of a dataset whose
    /// first dimension indexes rows.
    public func readRows<T: HDF5Element>(_ name: String, start: Int, count: Int, as: T.Type = T.self) throws -> [T] {
        let full = try resolve(name)
        return try locked {
            let d = try openDataset(full)
            defer { H5Dclose(d) }
            let shape = try shape(of: d, full)
            guard !shape.isEmpty, start >= 0, count >= 0, start <= shape[0] - count else {
                throw HDF5Error("\(file.path): \(count) rows from \(start) out of range for \(full) \(shape)")
            }
            // Not a factor of a checked total when the first dim is 0: checked here.
            var rowSize = 1, overflow = false
            for x in shape.dropFirst() where !overflow { (rowSize, overflow) = rowSize.multipliedReportingOverflow(by: x) }
            let (toRead, over2) = count.multipliedReportingOverflow(by: rowSize)
            guard !overflow, !over2 else {
                throw HDF5Error("\(file.path): \(full) has dims \(shape): their product overflows")
            }
            _ = try checkedCount(d, full, shape, elementSize: MemoryLayout<T>.stride, readCount: toRead)
            try checkNumericType(H5Dget_type(d), full)
            var out = [T](repeating: T.zeroValue, count: count * rowSize)
            let fs = H5Dget_space(d)
            defer { H5Sclose(fs) }
            var offs = [hsize_t](repeating: 0, count: shape.count)
            var cnt = shape.map { hsize_t($0) }
            offs[0] = hsize_t(start); cnt[0] = hsize_t(count)
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, offs, nil, cnt, nil)
            let ms = H5Screate_simple(Int32(shape.count), cnt, nil)
            defer { H5Sclose(ms) }
            let r = out.withUnsafeMutableBytes { H5Dread(d, T.hdf5Type.nativeType, ms, fs, mancs_h5p_default(), $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot read rows of \(full)") }
            return out
        }
    }

    /// Writes a dataset (replacing none: the name must be new). `checksum` adds
    /// HDF5's Fletcher32 filter (chunked storage) so damage is detected on read.
    public func write<T: HDF5Element>(_ name: String, _ values: [T], shape: [Int], checksum: Bool = false) throws {
        precondition(values.count == shape.reduce(1, *), "\(name): \(values.count) values for shape \(shape)")
        let full = name.hasPrefix("/") ? name : child(name)
        if let slash = full.lastIndex(of: "/"), slash != full.startIndex {
            try HDF5Group(file: file, path: "/").createGroup(String(full[..<slash]))
        }
        try locked {
            let dims = shape.map { hsize_t($0) }
            let sp = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), dims, nil)
            defer { H5Sclose(sp) }
            let dcpl = H5Pcreate(mancs_h5p_dataset_create())
            defer { H5Pclose(dcpl) }
            if checksum && !shape.isEmpty && values.count > 0 {
                // One chunk per dataset up to 1M elements along the first axis.
                var chunk = dims
                let rowSize = max(1, shape.dropFirst().reduce(1, *))
                chunk[0] = hsize_t(max(1, min(shape[0], (1 << 20) / rowSize)))
                H5Pset_chunk(dcpl, Int32(shape.count), chunk)
                H5Pset_fletcher32(dcpl)
            }
            let d = H5Dcreate2(file.id, full, T.hdf5Type.nativeType, sp, mancs_h5p_default(), dcpl, mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): cannot create dataset \(full)") }
            defer { H5Dclose(d) }
            errno = 0
            let r = values.withUnsafeBytes { H5Dwrite(d, T.hdf5Type.nativeType, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot write \(full)\(systemReason())") }
        }
    }

    /// Writes a 1-D dataset of variable-length UTF-8 strings.
    public func writeStrings(_ name: String, _ strings: [String]) throws {
        let full = name.hasPrefix("/") ? name : child(name)
        if let slash = full.lastIndex(of: "/"), slash != full.startIndex {
            try HDF5Group(file: file, path: "/").createGroup(String(full[..<slash]))
        }
        try locked {
            let t = H5Tcopy(mancs_h5t_c_s1())
            defer { H5Tclose(t) }
            H5Tset_size(t, mancs_h5t_variable())
            H5Tset_cset(t, H5T_CSET_UTF8)
            var dims = [hsize_t(strings.count)]
            let sp = H5Screate_simple(1, &dims, nil)
            defer { H5Sclose(sp) }
            let d = H5Dcreate2(file.id, full, t, sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): cannot create dataset \(full)") }
            defer { H5Dclose(d) }
            let cstrs = strings.map { strdup($0) }
            defer { cstrs.forEach { free($0) } }
            var ptrs: [UnsafePointer<CChar>?] = cstrs.map { UnsafePointer($0) }
            let r = H5Dwrite(d, t, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), &ptrs)
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot write \(full)") }
        }
    }

    /// Reads a 1-D (or scalar) dataset of strings, variable- or fixed-length.
    /// The buffer is sized from the dataset's own dataspace; other ranks are refused.
    public func readStrings(_ name: String) throws -> [String] {
        let full = try resolve(name)
        return try locked {
            let d = try openDataset(full)
            defer { H5Dclose(d) }
            let shape = try shape(of: d, full)
            guard shape.count <= 1 else {
                throw HDF5Error("\(file.path): \(full) has dims \(shape); expected a list of strings (1-D)")
            }
            let n = shape.first ?? 1
            guard n <= HDF5Limits.maxStrings else {
                throw HDF5Error("\(file.path): \(full) claims \(n) strings (more than \(HDF5Limits.maxStrings))")
            }
            let ft = H5Dget_type(d)
            defer { H5Tclose(ft) }
            guard H5Tget_class(ft) == H5T_STRING else { throw HDF5Error("\(file.path): \(full) is not a string dataset") }
            if n == 0 { return [] }
            if H5Tis_variable_str(ft) > 0 {
                // Descriptors stored per string (checked like numbers), then the text.
                _ = try checkedCount(d, full, shape, elementSize: 1)
                return try file.readVariableStrings(count: n, what: full) { type, buf in
                    H5Dread(d, type, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), buf)
                }
            } else {
                let size = H5Tget_size(ft)
                guard size > 0, size <= HDF5Limits.maxStringBytes else {
                    throw HDF5Error("\(file.path): \(full) has strings of \(size) bytes: refused")
                }
                _ = try checkedCount(d, full, shape, elementSize: size)
                var buf = [CChar](repeating: 0, count: n * size)
                guard H5Dread(d, ft, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), &buf) >= 0 else {
                    throw HDF5Error("\(file.path): cannot read \(full)")
                }
                return (0..<n).map { i in
                    let bytes = buf[(i * size)..<((i + 1) * size)].prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                    return String(decoding: bytes, as: UTF8.self)
                }
            }
        }
    }

    // MARK: Attributes (on this group)
    // Read by name only: listing a damaged header's attributes (H5Aget_name_by_idx,
    // H5Aiterate) crashes libhdf5 1.10.8 (Tests/fuzz/regressions/hdf5/h5a-attribute-table-segv.h5).

    public func hasAttribute(_ name: String) -> Bool {
        locked { H5Aexists_by_name(file.id, path, name, mancs_h5p_default()) > 0 }
    }

    /// Reads a numeric attribute (scalar or array) converted to T.
    public func attribute<T: HDF5Element>(_ name: String, as: T.Type = T.self) throws -> [T] {
        try locked {
            guard H5Aexists_by_name(file.id, path, name, mancs_h5p_default()) > 0 else {
                throw HDF5Error("\(file.path): \(path) has no attribute \(name)")
            }
            let a = H5Aopen_by_name(file.id, path, name, mancs_h5p_default(), mancs_h5p_default())
            guard a >= 0 else { throw HDF5Error("\(file.path): cannot open attribute \(name)") }
            defer { H5Aclose(a) }
            let sp = H5Aget_space(a)
            defer { H5Sclose(sp) }
            let n = Int(H5Sget_simple_extent_npoints(sp))
            guard n >= 0, n <= HDF5Limits.maxAttributeElements else {
                throw HDF5Error("\(file.path): attribute \(name) of \(path) claims \(n) elements: refused")
            }
            try checkNumericType(H5Aget_type(a), "attribute \(name) of \(path)")
            var out = [T](repeating: T.zeroValue, count: n)
            let r = out.withUnsafeMutableBytes { H5Aread(a, T.hdf5Type.nativeType, $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): attribute \(name) of \(path) is not numeric") }
            return out
        }
    }

    public func stringAttribute(_ name: String) throws -> String {
        try locked {
            guard H5Aexists_by_name(file.id, path, name, mancs_h5p_default()) > 0 else {
                throw HDF5Error("\(file.path): \(path) has no attribute \(name)")
            }
            let a = H5Aopen_by_name(file.id, path, name, mancs_h5p_default(), mancs_h5p_default())
            guard a >= 0 else { throw HDF5Error("\(file.path): cannot open attribute \(name)") }
            defer { H5Aclose(a) }
            let ft = H5Aget_type(a)
            defer { H5Tclose(ft) }
            guard H5Tget_class(ft) == H5T_STRING else { throw HDF5Error("\(file.path): attribute \(name) is not text") }
            // libhdf5 writes every element: the buffers below hold exactly one.
            let sp = H5Aget_space(a)
            defer { H5Sclose(sp) }
            let count = H5Sget_simple_extent_npoints(sp)
            guard count == 1 else {
                throw HDF5Error("\(file.path): attribute \(name) of \(path) holds \(count) strings; expected one")
            }
            if H5Tis_variable_str(ft) > 0 {
                return try file.readVariableStrings(count: 1, what: "attribute \(name) of \(path)") { type, buf in
                    H5Aread(a, type, buf)
                }[0]
            }
            let size = H5Tget_size(ft)
            guard size > 0, size <= HDF5Limits.maxStringBytes else {
                throw HDF5Error("\(file.path): attribute \(name) of \(path) is a string of \(size) bytes: refused")
            }
            var buf = [CChar](repeating: 0, count: size + 1)
            guard H5Aread(a, ft, &buf) >= 0 else { throw HDF5Error("\(file.path): cannot read attribute \(name)") }
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    public func setAttribute<T: HDF5Element>(_ name: String, _ values: [T], scalar: Bool = true) throws {
        try locked {
            if H5Aexists_by_name(file.id, path, name, mancs_h5p_default()) > 0 {
                H5Adelete_by_name(file.id, path, name, mancs_h5p_default())
            }
            var dims = [hsize_t(values.count)]
            let sp = (scalar && values.count == 1) ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dims, nil)
            defer { H5Sclose(sp) }
            let a = H5Acreate_by_name(file.id, path, name, T.hdf5Type.nativeType, sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
            guard a >= 0 else { throw HDF5Error("\(file.path): cannot create attribute \(name)") }
            defer { H5Aclose(a) }
            let r = values.withUnsafeBytes { H5Awrite(a, T.hdf5Type.nativeType, $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot write attribute \(name)") }
        }
    }

    public func setAttribute(_ name: String, string: String) throws {
        try locked {
            if H5Aexists_by_name(file.id, path, name, mancs_h5p_default()) > 0 {
                H5Adelete_by_name(file.id, path, name, mancs_h5p_default())
            }
            let t = H5Tcopy(mancs_h5t_c_s1())
            defer { H5Tclose(t) }
            H5Tset_size(t, mancs_h5t_variable())
            H5Tset_cset(t, H5T_CSET_UTF8)
            let sp = H5Screate(H5S_SCALAR)
            defer { H5Sclose(sp) }
            let a = H5Acreate_by_name(file.id, path, name, t, sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
            guard a >= 0 else { throw HDF5Error("\(file.path): cannot create attribute \(name)") }
            defer { H5Aclose(a) }
            let c = strdup(string)
            defer { free(c) }
            var p: UnsafePointer<CChar>? = UnsafePointer(c)
            guard H5Awrite(a, t, &p) >= 0 else { throw HDF5Error("\(file.path): cannot write attribute \(name)") }
        }
    }
}

extension HDF5Element {
    static var zeroValue: Self {
        switch hdf5Type {
        case .float32: return Float(0) as! Self
        case .float64: return Double(0) as! Self
        case .int64: return Int64(0) as! Self
        case .int32: return Int32(0) as! Self
        case .uint8: return UInt8(0) as! Self
        case .uint16: return UInt16(0) as! Self
        }
    }
}
