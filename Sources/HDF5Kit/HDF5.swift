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

/// Runs `body` holding the lock every HDF5Kit call takes, for code that calls
/// the C library directly (e.g. reading object references) alongside HDF5Kit.
public func withHDF5Lock<T>(_ body: () throws -> T) rethrows -> T { try locked(body) }

/// An open HDF5 file. Closed when released (or by `close()`).
public final class HDF5File: @unchecked Sendable {
    public let path: String
    let id: hid_t
    private var closed = false

    /// Opens an existing file read-only (or read-write).
    public init(openForReading path: String, writable: Bool = false) throws {
        self.path = path
        guard FileManager.default.fileExists(atPath: path) else {
            throw HDF5Error("\(path): no such file")
        }
        let fid = locked { H5Fopen(path, writable ? mancs_h5f_acc_rdwr() : mancs_h5f_acc_rdonly(), mancs_h5p_default()) }
        guard fid >= 0 else { throw HDF5Error("\(path): not a readable HDF5 file (truncated or damaged?)") }
        id = fid
    }

    /// Creates (truncating) a file.
    public init(creating path: String) throws {
        self.path = path
        let fid = locked { H5Fcreate(path, mancs_h5f_acc_trunc(), mancs_h5p_default(), mancs_h5p_default()) }
        guard fid >= 0 else { throw HDF5Error("\(path): cannot create HDF5 file") }
        id = fid
    }

    deinit { close() }

    public func close() {
        locked {
            if !closed { H5Fclose(id); closed = true }
        }
    }

    /// Flushes HDF5's buffers to the operating system.
    public func flush() throws {
        let r = locked { H5Fflush(id, H5F_SCOPE_GLOBAL) }
        if r < 0 { throw HDF5Error("\(path): flush failed") }
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
            }
            return true
        }
    }

    public func group(_ name: String) throws -> HDF5Group {
        let full = name.hasPrefix("/") ? name : child(name)
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

    /// Names of the links directly in this group, sorted.
    public func members() throws -> [String] {
        try locked {
            let g = H5Gopen2(file.id, path, mancs_h5p_default())
            guard g >= 0 else { throw HDF5Error("\(file.path): cannot open group \(path)") }
            defer { H5Gclose(g) }
            var info = H5G_info_t()
            H5Gget_info(g, &info)
            var names: [String] = []
            for i in 0..<info.nlinks {
                let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, mancs_h5p_default())
                guard n >= 0 else { continue }
                var buf = [CChar](repeating: 0, count: Int(n) + 1)
                H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, mancs_h5p_default())
                names.append(String(cString: buf))
            }
            return names.sorted()
        }
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
        let full = name.hasPrefix("/") ? name : child(name)
        return try locked {
            let d = H5Dopen2(file.id, full, mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): missing dataset \(full)") }
            defer { H5Dclose(d) }
            let sp = H5Dget_space(d)
            defer { H5Sclose(sp) }
            let rank = Int(H5Sget_simple_extent_ndims(sp))
            var dims = [hsize_t](repeating: 0, count: max(rank, 1))
            H5Sget_simple_extent_dims(sp, &dims, nil)
            return rank == 0 ? [] : dims.map { Int($0) }
        }
    }

    /// Reads a whole dataset, converting to T; returns values and shape.
    public func read<T: HDF5Element>(_ name: String, as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        let full = name.hasPrefix("/") ? name : child(name)
        let shape = try self.shape(full)
        let n = shape.reduce(1, *)
        var out = [T](repeating: T.zeroValue, count: n)
        try locked {
            let d = H5Dopen2(file.id, full, mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): missing dataset \(full)") }
            defer { H5Dclose(d) }
            let r = out.withUnsafeMutableBytes { H5Dread(d, T.hdf5Type.nativeType, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot read \(full) (damaged data or checksum mismatch)") }
        }
        return (out, shape)
    }

    /// Reads a contiguous slab of rows [start, start+count) of a dataset whose
    /// first dimension indexes rows.
    public func readRows<T: HDF5Element>(_ name: String, start: Int, count: Int, as: T.Type = T.self) throws -> [T] {
        let full = name.hasPrefix("/") ? name : child(name)
        let shape = try self.shape(full)
        guard !shape.isEmpty, start >= 0, start + count <= shape[0] else {
            throw HDF5Error("\(file.path): rows \(start)..<\(start + count) out of range for \(full) \(shape)")
        }
        let rowSize = shape.dropFirst().reduce(1, *)
        var out = [T](repeating: T.zeroValue, count: count * rowSize)
        try locked {
            let d = H5Dopen2(file.id, full, mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): missing dataset \(full)") }
            defer { H5Dclose(d) }
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
        }
        return out
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
            let r = values.withUnsafeBytes { H5Dwrite(d, T.hdf5Type.nativeType, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
            guard r >= 0 else { throw HDF5Error("\(file.path): cannot write \(full)") }
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

    /// Reads a 1-D dataset of strings (variable- or fixed-length).
    public func readStrings(_ name: String) throws -> [String] {
        let full = name.hasPrefix("/") ? name : child(name)
        let n = try shape(full).first ?? 1
        return try locked {
            let d = H5Dopen2(file.id, full, mancs_h5p_default())
            guard d >= 0 else { throw HDF5Error("\(file.path): missing dataset \(full)") }
            defer { H5Dclose(d) }
            let ft = H5Dget_type(d)
            defer { H5Tclose(ft) }
            guard H5Tget_class(ft) == H5T_STRING else { throw HDF5Error("\(file.path): \(full) is not a string dataset") }
            if H5Tis_variable_str(ft) > 0 {
                // The memory type copies the file's (including its character set).
                let t = H5Tget_native_type(ft, H5T_DIR_DEFAULT)
                defer { H5Tclose(t) }
                var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: n)
                guard H5Dread(d, t, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), &ptrs) >= 0 else {
                    throw HDF5Error("\(file.path): cannot read \(full)")
                }
                defer { ptrs.forEach { free($0) } }
                return ptrs.map { $0.map { String(cString: $0) } ?? "" }
            } else {
                let size = H5Tget_size(ft)
                var buf = [CChar](repeating: 0, count: n * size + 1)
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

    public func attributeNames() throws -> [String] {
        try locked {
            let o = H5Oopen(file.id, path, mancs_h5p_default())
            guard o >= 0 else { throw HDF5Error("\(file.path): cannot open \(path)") }
            defer { H5Oclose(o) }
            var info = H5O_info_t()
            H5Oget_info2(o, &info, UInt32(H5O_INFO_NUM_ATTRS))
            var names: [String] = []
            for i in 0..<info.num_attrs {
                let n = H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, mancs_h5p_default())
                guard n >= 0 else { continue }
                var buf = [CChar](repeating: 0, count: n + 1)
                H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, n + 1, mancs_h5p_default())
                names.append(String(cString: buf))
            }
            return names
        }
    }

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
            if H5Tis_variable_str(ft) > 0 {
                var p: UnsafeMutablePointer<CChar>? = nil
                guard H5Aread(a, ft, &p) >= 0 else { throw HDF5Error("\(file.path): cannot read attribute \(name)") }
                defer { free(p) }
                return p.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(ft)
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
