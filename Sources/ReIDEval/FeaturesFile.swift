import Foundation
import HDF5Kit

/// The features file of docs/method.md §7 (HDF5):
///
///     /query/features   [Nq, E] float32     /gallery/features   [Ng, E] float32
///     /query/pids       [Nq] int64          /gallery/pids       [Ng] int64
///     /query/camids     [Nq] int64          /gallery/camids     [Ng] int64
///     /query/paths      [Nq] strings (optional, likewise under /gallery)
///
/// and optionally a `/multiquery` group with the same layout (Market-1501's
/// gt_bbox images, for the multi-query protocol).
public struct FeaturesFile: Sendable {
    public var query: FeatureSet
    public var gallery: FeatureSet
    public var multiQuery: FeatureSet?

    /// The feature dimension E shared by every split.
    public var dim: Int { query.dim }

    public init(query: FeatureSet, gallery: FeatureSet, multiQuery: FeatureSet? = nil) throws {
        guard gallery.dim == query.dim else {
            throw EvalError("features: query has dimension \(query.dim) but gallery has \(gallery.dim)")
        }
        if let mq = multiQuery, mq.dim != query.dim {
            throw EvalError("features: query has dimension \(query.dim) but multiquery has \(mq.dim)")
        }
        self.query = query
        self.gallery = gallery
        self.multiQuery = multiQuery
    }

    // MARK: Reading

    /// Reads a features file; any missing dataset, wrong rank, mismatched length or
    /// differing dimension is a one-line `EvalError` naming the file and dataset.
    public static func read(_ path: String) throws -> FeaturesFile {
        let file: HDF5File
        do { file = try HDF5File(openForReading: path) } catch let e as HDF5Error { throw EvalError(e.message) }
        defer { file.close() }
        let root = file.root
        let query = try readSplit(root, "query", path: path)
        let gallery = try readSplit(root, "gallery", path: path)
        let mq = root.exists("multiquery") ? try readSplit(root, "multiquery", path: path) : nil
        guard gallery.dim == query.dim else {
            throw EvalError("\(path): /query/features has dimension \(query.dim) but /gallery/features has \(gallery.dim)")
        }
        if let mq, mq.dim != query.dim {
            throw EvalError("\(path): /query/features has dimension \(query.dim) but /multiquery/features has \(mq.dim)")
        }
        return try FeaturesFile(query: query, gallery: gallery, multiQuery: mq)
    }

    static func readSplit(_ root: HDF5Group, _ split: String, path: String) throws -> FeatureSet {
        let g = "/" + split
        guard root.exists(split) else { throw EvalError("\(path): missing group \(g)") }
        for name in ["features", "pids", "camids"] where !root.exists("\(split)/\(name)") {
            throw EvalError("\(path): missing dataset \(g)/\(name)")
        }
        do {
            let fshape = try root.shape("\(g)/features")
            guard fshape.count == 2 else {
                throw EvalError("\(path): \(g)/features must be 2-D [N, E], has shape \(fshape)")
            }
            let rows = fshape[0], dim = fshape[1]
            guard dim > 0 else { throw EvalError("\(path): \(g)/features has feature dimension 0") }
            for name in ["pids", "camids"] {
                let s = try root.shape("\(g)/\(name)")
                guard s.count == 1 else { throw EvalError("\(path): \(g)/\(name) must be 1-D, has shape \(s)") }
                guard s[0] == rows else {
                    throw EvalError("\(path): \(g)/\(name) has \(s[0]) entries but \(g)/features has \(rows) rows")
                }
            }
            var paths: [String]? = nil
            if root.exists("\(split)/paths") {
                let p = try root.readStrings("\(g)/paths")
                guard p.count == rows else {
                    throw EvalError("\(path): \(g)/paths has \(p.count) entries but \(g)/features has \(rows) rows")
                }
                paths = p
            }
            let features = try root.read("\(g)/features", as: Float.self).values
            let pids = try root.read("\(g)/pids", as: Int64.self).values
            let camids = try root.read("\(g)/camids", as: Int64.self).values
            return try FeatureSet(features: features, dim: dim, pids: pids, camids: camids, paths: paths,
                                  name: "\(path): \(g)")
        } catch let e as HDF5Error {
            throw EvalError(e.message)
        }
    }

    // MARK: Writing

    /// Writes the file like a checkpoint: a temporary beside it, fsynced, read
    /// back, renamed into place; a failure leaves any previous file untouched.
    public func write(to path: String) throws {
        do {
            try HDF5File.replaceAtomically(URL(fileURLWithPath: path), write: { tmp in
                let file = try HDF5File(creating: tmp)
                defer { file.close() }
                let root = file.root
                try Self.writeSplit(root, "query", query)
                try Self.writeSplit(root, "gallery", gallery)
                if let mq = multiQuery { try Self.writeSplit(root, "multiquery", mq) }
                try file.flush()
            }, verify: { tmp in _ = try FeaturesFile.read(tmp) })
        } catch let e as HDF5Error {
            throw EvalError(e.message)
        }
    }

    static func writeSplit(_ root: HDF5Group, _ split: String, _ set: FeatureSet) throws {
        try root.write("/\(split)/features", set.features, shape: [set.count, set.dim])
        try root.write("/\(split)/pids", set.pids, shape: [set.count])
        try root.write("/\(split)/camids", set.camids, shape: [set.count])
        if let paths = set.paths { try root.writeStrings("/\(split)/paths", paths) }
    }
}

extension FeaturesFile {
    /// Every split's rows scaled to unit L2 norm (`mancs extract --normalize`).
    public func l2Normalized() throws -> FeaturesFile {
        try FeaturesFile(query: ReIDEval.l2Normalized(query), gallery: ReIDEval.l2Normalized(gallery),
                         multiQuery: multiQuery.map { ReIDEval.l2Normalized($0) })
    }
}
