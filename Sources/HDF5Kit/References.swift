import CHDF5

/// An object reference stored in a dataset (a MATLAB v7.3 cell array is a
/// dataset of them, pointing into `/#refs#`).
public struct HDF5Reference: Hashable, Sendable {
    /// The referenced object's address in the file.
    public let address: UInt64
}

/// What a dataset stores, by the class of its type.
public enum HDF5DataClass: Equatable, Sendable {
    case objectReferences
    case integer(bytes: Int)
    case float
    case string
    case other
}

/// A dataset named by path or reached through an object reference. Each call
/// opens it with the checks every HDF5Kit read applies: no link followed on
/// the way (a path is resolved hard link by hard link), no data in external
/// files, sizes checked against the file before anything is allocated.
/// Dereferencing follows no links at all; a reference must point inside the
/// file and at a dataset.
public struct HDF5Dataset: Sendable {
    public let file: HDF5File
    /// The dataset's name in messages (its path, or what the caller calls it).
    public let what: String
    enum Locator: Sendable { case path(String), reference(UInt64) }
    let locator: Locator

    /// Opens the dataset (the lock held); the caller closes it.
    private func open() throws -> hid_t {
        let group = file.root
        switch locator {
        case .path(let full):
            return try group.openDataset(full)
        case .reference(let address):
            guard address > 0, address < UInt64(file.fileBytes) else {
                throw HDF5Error("\(file.path): \(what) is a reference to address \(address), outside the file: refused")
            }
            var ref = hobj_ref_t(address)
            let o = H5Rdereference2(file.id, mancs_h5p_default(), H5R_OBJECT, &ref)
            guard o >= 0 else { throw HDF5Error("\(file.path): \(what) is a dangling reference") }
            guard H5Iget_type(o) == H5I_DATASET else {
                H5Oclose(o)
                throw HDF5Error("\(file.path): \(what) refers to a group or type, not a dataset")
            }
            return try group.checkedStorage(o, what)
        }
    }

    private func withOpen<R>(_ body: (hid_t) throws -> R) throws -> R {
        try locked {
            let d = try open()
            defer { H5Dclose(d) }
            return try body(d)
        }
    }

    /// Dims, HDF5 order ([] for a scalar).
    public func shape() throws -> [Int] {
        try withOpen { try file.root.shape(of: $0, what) }
    }

    public func dataClass() throws -> HDF5DataClass {
        try withOpen { d in
            let t = H5Dget_type(d)
            defer { H5Tclose(t) }
            switch H5Tget_class(t) {
            case H5T_REFERENCE: return H5Tequal(t, mancs_h5t_std_ref_obj()) > 0 ? .objectReferences : .other
            case H5T_INTEGER: return .integer(bytes: H5Tget_size(t))
            case H5T_FLOAT: return .float
            case H5T_STRING: return .string
            default: return .other
            }
        }
    }

    /// The whole dataset converted to T.
    public func read<T: HDF5Element>(as: T.Type = T.self) throws -> (values: [T], shape: [Int]) {
        try withOpen { try file.root.read($0, what, as: T.self) }
    }

    /// The whole dataset of object references (not yet dereferenced).
    public func readReferences() throws -> (references: [HDF5Reference], shape: [Int]) {
        try withOpen { d in
            let t = H5Dget_type(d)
            defer { H5Tclose(t) }
            guard H5Tequal(t, mancs_h5t_std_ref_obj()) > 0 else {
                throw HDF5Error("\(file.path): \(what) does not hold object references")
            }
            let group = file.root
            let shape = try group.shape(of: d, what)
            let n = try group.checkedCount(d, what, shape, elementSize: MemoryLayout<hobj_ref_t>.stride)
            var refs = [hobj_ref_t](repeating: 0, count: n)
            guard H5Dread(d, mancs_h5t_std_ref_obj(), mancs_h5s_all(), mancs_h5s_all(), mancs_h5p_default(), &refs) >= 0 else {
                throw HDF5Error("\(file.path): cannot read the references of \(what)")
            }
            return (refs.map { HDF5Reference(address: UInt64($0)) }, shape)
        }
    }
}

extension HDF5File {
    /// The dataset at an absolute path (links on the way checked when opened).
    public func dataset(_ path: String) throws -> HDF5Dataset {
        HDF5Dataset(file: self, what: path, locator: .path(try root.resolve(path)))
    }

    /// The dataset `reference` points to, called `what` in messages.
    public func dataset(_ reference: HDF5Reference, what: String) -> HDF5Dataset {
        HDF5Dataset(file: self, what: what, locator: .reference(reference.address))
    }
}
