import CHDF5
import Foundation
import HDF5Kit

/// Builds HDF5 files a careless or hostile tool could produce, through the C
/// library directly (HDF5Kit refuses to write most of them).
public enum HostileHDF5 {
    /// Creates `path` and lets `body` add objects with the raw file id.
    public static func make(_ path: String, _ body: (hid_t) throws -> Void) rethrows {
        try withHDF5Lock { try makeLocked(path, body) }
    }

    static func makeLocked(_ path: String, _ body: (hid_t) throws -> Void) rethrows {
        mancs_h5_silence_errors()
        let f = H5Fcreate(path, mancs_h5f_acc_trunc(), mancs_h5p_default(), mancs_h5p_default())
        precondition(f >= 0, "cannot create \(path)")
        defer { H5Fclose(f) }
        try body(f)
    }

    /// Opens an existing file read-write and lets `body` change it.
    public static func edit(_ path: String, _ body: (hid_t) throws -> Void) rethrows {
        try withHDF5Lock {
            mancs_h5_silence_errors()
            let f = H5Fopen(path, mancs_h5f_acc_rdwr(), mancs_h5p_default())
            precondition(f >= 0, "cannot open \(path)")
            defer { H5Fclose(f) }
            try body(f)
        }
    }

    public static func deleteAttribute(_ f: hid_t, object: String, _ name: String) {
        precondition(H5Adelete_by_name(f, object, name, mancs_h5p_default()) >= 0)
    }

    /// A float32 dataset at `name` holding `values` (1-D).
    public static func floats(_ f: hid_t, _ name: String, _ values: [Float]) {
        var dims = [hsize_t(values.count)]
        let sp = H5Screate_simple(1, &dims, nil); defer { H5Sclose(sp) }
        let d = H5Dcreate2(f, name, mancs_h5t_native_float(), sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
        precondition(d >= 0, "cannot create \(name)")
        defer { H5Dclose(d) }
        _ = values.withUnsafeBytes { H5Dwrite(d, mancs_h5t_native_float(), mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0.baseAddress) }
    }

    public static func group(_ f: hid_t, _ name: String) {
        let g = H5Gcreate2(f, name, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
        precondition(g >= 0, "cannot create group \(name)")
        H5Gclose(g)
    }

    /// `h5py: f[link] = f[target]` (a second hard link to an existing object).
    public static func hardLink(_ f: hid_t, _ target: String, _ link: String) {
        precondition(H5Lcreate_hard(f, target, f, link, mancs_h5p_default(), mancs_h5p_default()) >= 0)
    }

    public static func softLink(_ f: hid_t, _ target: String, _ link: String) {
        precondition(H5Lcreate_soft(target, f, link, mancs_h5p_default(), mancs_h5p_default()) >= 0)
    }

    public static func externalLink(_ f: hid_t, file: String, object: String, _ link: String) {
        precondition(H5Lcreate_external(file, object, f, link, mancs_h5p_default(), mancs_h5p_default()) >= 0)
    }

    /// A float32 dataset whose bytes live in an external raw file.
    public static func externalStorage(_ f: hid_t, _ name: String, rawFile: String, count: Int) {
        var dims = [hsize_t(count)]
        let sp = H5Screate_simple(1, &dims, nil); defer { H5Sclose(sp) }
        let dcpl = H5Pcreate(mancs_h5p_dataset_create()); defer { H5Pclose(dcpl) }
        precondition(H5Pset_external(dcpl, rawFile, 0, hsize_t(count * 4)) >= 0)
        let d = H5Dcreate2(f, name, mancs_h5t_native_float(), sp, mancs_h5p_default(), dcpl, mancs_h5p_default())
        precondition(d >= 0); H5Dclose(d)
    }

    /// A chunked float32 dataset of the given dims with no data written (it
    /// occupies no storage; a reader that trusts the dims allocates all of it).
    public static func hugeEmpty(_ f: hid_t, _ name: String, dims: [Int]) {
        var d = dims.map { hsize_t($0) }
        let sp = H5Screate_simple(Int32(d.count), &d, nil); defer { H5Sclose(sp) }
        let dcpl = H5Pcreate(mancs_h5p_dataset_create()); defer { H5Pclose(dcpl) }
        var chunk = dims.map { _ in hsize_t(1) }; chunk[chunk.count - 1] = 1024
        H5Pset_chunk(dcpl, Int32(chunk.count), &chunk)
        let ds = H5Dcreate2(f, name, mancs_h5t_native_float(), sp, mancs_h5p_default(), dcpl, mancs_h5p_default())
        precondition(ds >= 0, "cannot create \(name)"); H5Dclose(ds)
    }

    /// A variable-length string type (UTF-8) or a fixed-length one of `size` bytes.
    static func stringType(fixed size: Int?) -> hid_t {
        let t = H5Tcopy(mancs_h5t_c_s1())
        H5Tset_size(t, size ?? mancs_h5t_variable())
        H5Tset_cset(t, H5T_CSET_UTF8)
        return t
    }

    static func space(_ dims: [Int]) -> hid_t {
        var d = dims.map { hsize_t($0) }
        return dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(d.count), &d, nil)
    }

    /// A string attribute on `object` holding `strings` with the given dims
    /// (variable-length, or fixed-length of `fixed` bytes each).
    public static func stringAttribute(_ f: hid_t, object: String, _ name: String, _ strings: [String],
                                       dims: [Int], fixed: Int? = nil) {
        let t = stringType(fixed: fixed); defer { H5Tclose(t) }
        let sp = space(dims); defer { H5Sclose(sp) }
        let a = H5Acreate_by_name(f, object, name, t, sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
        precondition(a >= 0, "cannot create attribute \(name)")
        defer { H5Aclose(a) }
        writeStrings(strings, type: t, fixed: fixed) { H5Awrite(a, t, $0) }
    }

    /// A string dataset at `name` holding `strings` with the given dims.
    public static func stringDataset(_ f: hid_t, _ name: String, _ strings: [String], dims: [Int], fixed: Int? = nil) {
        let t = stringType(fixed: fixed); defer { H5Tclose(t) }
        let sp = space(dims); defer { H5Sclose(sp) }
        let d = H5Dcreate2(f, name, t, sp, mancs_h5p_default(), mancs_h5p_default(), mancs_h5p_default())
        precondition(d >= 0, "cannot create \(name)")
        defer { H5Dclose(d) }
        writeStrings(strings, type: t, fixed: fixed) { H5Dwrite(d, t, mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), $0) }
    }

    static func writeStrings(_ strings: [String], type: hid_t, fixed: Int?, _ write: (UnsafeRawPointer) -> herr_t) {
        if let size = fixed {
            var buf = [CChar](repeating: 0, count: strings.count * size)
            for (i, s) in strings.enumerated() {
                for (j, c) in s.utf8.prefix(size).enumerated() { buf[i * size + j] = CChar(bitPattern: c) }
            }
            precondition(buf.withUnsafeBytes { write($0.baseAddress!) } >= 0)
        } else {
            let c = strings.map { strdup($0) }
            defer { c.forEach { free($0) } }
            let ptrs: [UnsafePointer<CChar>?] = c.map { UnsafePointer($0) }
            precondition(ptrs.withUnsafeBytes { write($0.baseAddress!) } >= 0)
        }
    }
}
