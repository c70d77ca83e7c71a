import HDF5Kit

/// A tensor that is missing from a file or has the wrong shape there.
public struct TensorLoadError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension ParameterStore {
    /// Loads every tensor of the store from `group/<name>` (file layout, e.g. a
    /// checkpoint's `/model` or `/buffers`), into the values or the gradients.
    /// Throws, naming the tensor, when one is missing or shaped differently.
    public func load(from group: HDF5Group, gradient: Bool = false) throws {
        for t in tensors {
            guard group.exists(t.name) else {
                throw TensorLoadError("\(group.file.path): missing \(group.path)/\(t.name)")
            }
            let (data, shape) = try group.read(t.name, as: Float.self)
            guard shape == t.shape else {
                throw TensorLoadError("\(group.file.path): \(group.path)/\(t.name) has shape \(shape), expected \(t.shape)")
            }
            load(t, from: data, gradient: gradient)
        }
    }

    /// Writes every tensor (file layout) as `group/<name>`.
    public func write(to group: HDF5Group, gradient: Bool = false, checksum: Bool = false) throws {
        for t in tensors {
            try group.write(t.name, export(t, gradient: gradient), shape: t.shape, checksum: checksum)
        }
    }
}
